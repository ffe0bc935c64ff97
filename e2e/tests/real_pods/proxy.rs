//! nginx in front of the pods: WebSocket, long-polling affinity, X-Forwarded-For.

use crate::support::*;

#[tokio::test]
#[ignore = "needs a cluster: run e2e/run.sh"]
async fn real_pods_behind_nginx_websocket_polling_affinity_and_forwarded_client_addresses() {
    if !real_node(
        "real_pods_behind_nginx_websocket_polling_affinity_and_forwarded_client_addresses",
    ) {
        return;
    }
    let _one = SERVICE_DEPLOYMENT.lock().await;
    let client = admin().await;
    let nginx = env("E2E_NGINX_URL");
    let ready = settle(&client, 2).await;
    // nginx follows the endpoints (as an ingress controller does): wait until it proxies to exactly these pods.
    let mut ips: Vec<String> = ready.iter().map(pod_ip).collect();
    ips.sort();
    until(
        Duration::from_secs(30),
        "nginx's upstream to list the ready pods",
        || async {
            let conf = std::fs::read_to_string(env("E2E_NGINX_UPSTREAM")).ok()?;
            let mut listed: Vec<String> = conf
                .lines()
                .filter_map(|l| Some(l.strip_prefix("server ")?.split(':').next()?.to_string()))
                .collect();
            listed.sort();
            (listed == ips).then_some(())
        },
    )
    .await;
    let event = Uuid::new_v4();
    // WebSocket through the proxy (Upgrade / Connection passed on).
    let token = register(&from("127.0.0.1"), &nginx).await;
    let mut ws = sio_connect(&nginx, &token).await;
    ws.send(event_frame("join-event", &json!({ "eventId": event })))
        .await
        .unwrap();
    let info = wait_event(&mut ws, "room-info").await;
    eprintln!("websocket through nginx: room-info {info}");
    // Long-polling clients from four addresses: every request of a session must reach the pod holding it.
    for i in 2..6 {
        let http = from(&format!("127.0.0.{i}"));
        let token = register(&http, &nginx).await;
        let (code, open) = poll(&http, &nginx, None, None).await;
        assert_eq!(code, 200, "{open}");
        let handshake: Value = serde_json::from_str(open.trim_start_matches('0')).unwrap();
        let sid = handshake["sid"].as_str().unwrap().to_string();
        let connect = sio::connect_packet(&token);
        let (code, body) = poll(&http, &nginx, Some(&sid), Some(connect)).await;
        assert_eq!(
            (code, body.as_str()),
            (200, "ok"),
            "polling CONNECT of 127.0.0.{i}"
        );
        poll_until(&http, &nginx, &sid, "40").await;
        let join = sio::event_packet("join-event", &json!({ "eventId": event }));
        let (code, body) = poll(&http, &nginx, Some(&sid), Some(join)).await;
        assert_eq!((code, body.as_str()), (200, "ok"));
        let packets = poll_until(&http, &nginx, &sid, "42[\"room-info\"").await;
        assert!(
            !packets.iter().any(|p| p.contains("Session ID unknown")),
            "127.0.0.{i}: {packets:?}"
        );
    }
    eprintln!("polling through nginx: 4 sessions, 5 requests each, all on their own pod");
    // X-Forwarded-For: the service trusts the proxy (TRUSTED_PROXIES), so each client has its own login budget.
    let noisy = from("127.0.0.7");
    // The limit counts per fixed minute: start the burst well inside one (not in its last 15 s).
    until(Duration::from_secs(20), "a fresh minute window", || async {
        (Utc::now().timestamp() % 60 < 45).then_some(())
    })
    .await;
    // At once: the attempts over the budget are refused before any password hashing.
    let burst: Vec<_> = (0..40)
        .map(|n| {
            let noisy = noisy.clone();
            let nginx = nginx.clone();
            tokio::spawn(async move {
                noisy
                    .post(format!("{nginx}/api/auth/login"))
                    .json(&json!({ "email": format!("nobody-{n}-{}@e2e.tiketi.test", Uuid::new_v4().simple()), "password": "wrong-password" }))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for b in burst {
        statuses.push(b.await.unwrap());
    }
    assert!(
        statuses.contains(&429),
        "the noisy client is limited: {statuses:?}"
    );
    let quiet = from("127.0.0.8")
        .post(format!("{nginx}/api/auth/login"))
        .json(&json!({ "email": format!("quiet-{}@e2e.tiketi.test", Uuid::new_v4().simple()), "password": "wrong-password" }))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    assert_ne!(
        quiet, 429,
        "another client behind the same proxy keeps its own budget"
    );
    eprintln!(
        "X-Forwarded-For: 127.0.0.7 got {} x 429 of 40 logins at once, 127.0.0.8 answered {quiet}",
        statuses.iter().filter(|s| **s == 429).count()
    );
}
