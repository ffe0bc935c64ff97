//! rooms: what each replica's fan-out subscriber receives, with a Redis channel per event room and
//! with every broadcast on the namespace channel (`FANOUT_ROOM_CHANNELS`). Three replicas; event A's
//! sockets on replica 1, B's on 1 and 2, C's on 1, 2 and 3; each event gets the same number of seat
//! holds, sent to the replicas in turn. With room channels a replica receives only the updates of
//! the events its sockets follow (3 : 2 : 1); on one channel every replica receives everything.

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use anyhow::{Context, Result, ensure};
use serde_json::json;
use uuid::Uuid;

use crate::{
    Ctx,
    agent::{self, Job},
    fixtures,
    report::Figure,
    servers::{Env, Kind, Stack},
    wait,
};

/// Sockets per (event, replica) placement.
const SOCKETS: usize = 30;
/// Seat holds per event and run.
const HOLDS: usize = 40;
const REPLICAS: usize = 3;

/// One run's figures.
struct Run {
    /// Messages (room + namespace channel) each replica's subscriber received during the holds.
    received: [u64; REPLICAS],
    delivered: u64,
    expected: u64,
}

/// An event of the run: its seats and buyers, and the replicas its sockets are on.
struct Sale {
    name: &'static str,
    event: Uuid,
    seats: Vec<Uuid>,
    buyers: Vec<String>,
    on: usize,
}

pub async fn run(ctx: &mut Ctx) -> Result<()> {
    println!(
        "\n== rooms: {REPLICAS} replicas, events on 1 / 2 / 3 of them, {HOLDS} holds per event"
    );
    let mut setups = vec![
        ("one Redis", ctx.env.clone(), true),
        ("one Redis", ctx.env.clone(), false),
    ];
    if let Some(url) = &ctx.args.redis_cluster_url {
        let mut env = ctx.env.clone();
        env.redis_url = url.clone();
        setups.push(("Redis Cluster", env, true));
    }
    let mut runs = Vec::new();
    for (n, (redis, env, room_channels)) in setups.into_iter().enumerate() {
        let run = measure(ctx, &env, room_channels, n).await?;
        runs.push((redis, room_channels, run));
    }
    let namespace_total = runs
        .iter()
        .find(|(_, rooms, _)| !rooms)
        .map(|(_, _, r)| r.received.iter().sum::<u64>());
    for (redis, room_channels, r) in &runs {
        let mode = if *room_channels {
            "a channel per room"
        } else {
            "one namespace channel"
        };
        let [one, two, three] = r.received;
        let shape_ok = if *room_channels {
            // only the events each replica serves: A+B+C, B+C, C
            one == 3 * three && two == 2 * three && three > 0
        } else {
            one == two && two == three && one > 0
        };
        let shape = if *room_channels {
            "3 : 2 : 1 (only the events its sockets follow)"
        } else {
            "equal (every replica reads everything)"
        };
        ctx.report.add(
            Figure::new(
                "rooms",
                &format!("{redis}, {mode}: messages received by replica 1 / 2 / 3"),
                "",
            )
            .tiketi((one + two + three) as f64)
            .check(format!("{one} / {two} / {three}: {shape}"), shape_ok),
        );
        if *room_channels && let Some(all) = namespace_total {
            ctx.report.add(
                Figure::new(
                    "rooms",
                    &format!("{redis}, {mode}: messages received, share of one channel's"),
                    "%",
                )
                .tiketi(100.0 * (one + two + three) as f64 / all.max(1) as f64)
                .target(
                    "2/3 here (events on 1, 2 and 3 of 3 replicas)",
                    100.0 * 2.0 / 3.0,
                ),
            );
        }
        ctx.report.add(
            Figure::new(
                "rooms",
                &format!("{redis}, {mode}: deliveries (of {})", r.expected),
                "",
            )
            .tiketi(r.delivered as f64)
            .higher_is_better()
            .check("all", r.delivered == r.expected),
        );
    }
    Ok(())
}

/// Run `n` of the scenario (its users and events are its own).
async fn measure(ctx: &Ctx, env: &Env, room_channels: bool, n: usize) -> Result<Run> {
    let mut env = env.clone();
    env.service_env
        .push(("FANOUT_ROOM_CHANNELS".into(), room_channels.to_string()));
    println!(
        "-- {} × {REPLICAS}, FANOUT_ROOM_CHANNELS={room_channels}, {}",
        Kind::Tiketi.label(),
        env.redis_url
    );
    let mut sales = Vec::new();
    for (name, on) in [("A", 1), ("B", 2), ("C", 3)] {
        let (event, seats) =
            fixtures::seat_event(&ctx.db, &format!("rooms-{n}-{name}"), HOLDS, 1_000_000).await?;
        let users = fixtures::users(&ctx.db, &format!("rooms-{n}-buyer-{name}"), HOLDS).await?;
        sales.push(Sale {
            name,
            event,
            seats,
            buyers: fixtures::tokens(&env.jwt_secret, &users)?,
            on,
        });
    }
    let stack = Stack::start(Kind::Tiketi, &env, REPLICAS, ctx.args.port).await?;
    let addrs = stack.addrs();
    let mut agents = Vec::new();
    for sale in &sales {
        let listeners = fixtures::users(
            &ctx.db,
            &format!("rooms-{n}-listener-{}", sale.name),
            SOCKETS * sale.on,
        )
        .await?;
        let job = Job {
            servers: addrs[..sale.on].to_vec(),
            sources: ctx.sources.clone(),
            tokens: fixtures::tokens(&env.jwt_secret, &listeners)?,
            joins: vec![
                ("join-event".into(), json!({ "eventId": sale.event })),
                (
                    "join-seat-selection".into(),
                    json!({ "eventId": sale.event }),
                ),
            ],
            record: vec!["seat-locked".into()],
            key_field: "seatId".into(),
            concurrency: 64,
        };
        let (procs, ready) = agent::start_all(&job, 1).await?;
        ensure!(
            ready.connected == job.tokens.len(),
            "event {}: {} of {} sockets connected ({:?})",
            sale.name,
            ready.connected,
            job.tokens.len(),
            ready.first_error
        );
        agents.push(procs);
    }
    // the rooms' subscriptions are made as the first socket joins: wait until the replicas are idle
    wait::idle(&stack.pids(), Duration::from_secs(30)).await;
    let before = received(&addrs).await?;
    let http = reqwest::Client::new();
    for i in 0..HOLDS {
        for sale in &sales {
            let replica = addrs[(i + sale.on) % REPLICAS];
            hold(&http, replica, sale.event, sale.seats[i], &sale.buyers[i]).await?;
        }
    }
    wait::idle(&stack.pids(), Duration::from_secs(30)).await;
    let after = received(&addrs).await?;
    let mut delivered = 0;
    let mut expected = 0;
    for (sale, procs) in sales.iter().zip(agents) {
        let done = agent::finish_all(procs).await?;
        let arrivals = done.arrivals.get("seat-locked");
        for seat in &sale.seats {
            delivered += arrivals
                .and_then(|a| a.get(&seat.to_string()))
                .map_or(0, |v| v.len() as u64);
        }
        expected += (SOCKETS * sale.on * HOLDS) as u64;
    }
    stack.stop().await;
    let mut got = [0; REPLICAS];
    for (i, g) in got.iter_mut().enumerate() {
        *g = after[i] - before[i];
    }
    println!("   received per replica {got:?}; {delivered} of {expected} seat-locked delivered");
    Ok(Run {
        received: got,
        delivered,
        expected,
    })
}

/// Each replica's `tiketi_fanout_received_total`, room and namespace channels together.
async fn received(addrs: &[SocketAddr]) -> Result<Vec<u64>> {
    let http = reqwest::Client::new();
    let mut out = Vec::new();
    for a in addrs {
        let text = http
            .get(format!("http://{a}/metrics"))
            .send()
            .await?
            .text()
            .await?;
        let mut by_kind: HashMap<&str, u64> = HashMap::new();
        for kind in ["room", "namespace"] {
            let prefix = format!(r#"tiketi_fanout_received_total{{kind="{kind}"}} "#);
            let n = text
                .lines()
                .find_map(|l| l.strip_prefix(&prefix)?.parse().ok())
                .unwrap_or(0);
            by_kind.insert(kind, n);
        }
        out.push(by_kind.values().sum());
    }
    Ok(out)
}

async fn hold(
    http: &reqwest::Client,
    replica: SocketAddr,
    event: Uuid,
    seat: Uuid,
    token: &str,
) -> Result<()> {
    let res = http
        .post(format!("http://{replica}/api/seats/reserve"))
        .bearer_auth(token)
        .json(&json!({ "eventId": event, "seatIds": [seat] }))
        .send()
        .await
        .context("hold")?;
    let status = res.status();
    ensure!(
        status.as_u16() == 201,
        "hold answered {status}: {}",
        res.text().await.unwrap_or_default()
    );
    Ok(())
}
