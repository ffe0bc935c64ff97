//! Public event pages: list, search, detail and the ticket endpoints (docs/wire-contract.md §1.3 Events, Tickets).

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::{TestApp, eventually, is_wire_time, keys, sorted};

const LIST_KEYS: &[&str] = &[
    "id",
    "title",
    "description",
    "venue",
    "address",
    "event_date",
    "sale_start_date",
    "sale_end_date",
    "poster_image_url",
    "status",
    "artist_name",
    "ticket_type_count",
    "min_price",
    "max_price",
];

const TICKET_TYPE_KEYS: &[&str] = &[
    "id",
    "name",
    "price",
    "total_quantity",
    "available_quantity",
    "description",
];

/// Sets one text column of an event (test set-up, before anything is cached).
async fn set(app: &TestApp, event: Uuid, column: &str, value: &str) {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE events SET {column} = $2 WHERE id = $1"
    )))
    .bind(event)
    .bind(value)
    .execute(&app.db)
    .await
    .unwrap();
}

async fn add_ticket_type(app: &TestApp, event: Uuid, name: &str, price: i32) -> Uuid {
    sqlx::query_scalar(
        "INSERT INTO ticket_types (event_id, name, price, total_quantity, available_quantity, description)
         VALUES ($1, $2, $3, 100, 80, '설명') RETURNING id",
    )
    .bind(event)
    .bind(name)
    .bind(price)
    .fetch_one(&app.db)
    .await
    .unwrap()
}

fn ids(body: &Value) -> Vec<Uuid> {
    body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().parse().unwrap())
        .collect()
}

#[tokio::test]
async fn events_list_shape_order_and_pagination() {
    let app = TestApp::spawn().await;
    let third = app.insert_event("", "-1 hour", "+1 day").await;
    let first = app.insert_event("", "-3 hours", "+1 day").await;
    let second = app.insert_event("", "-2 hours", "+1 day").await;
    add_ticket_type(&app, second, "R석", 120000).await;
    add_ticket_type(&app, second, "S석", 80000).await;

    let (status, body) = app.get("/api/events", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(keys(&body), sorted(&["events", "pagination"]));
    assert_eq!(
        body["pagination"],
        json!({ "page": 1, "limit": 10, "total": 3, "totalPages": 1 })
    );
    assert_eq!(ids(&body), [first, second, third], "sale_start_date ASC");
    let events = body["events"].as_array().unwrap();
    for e in events {
        assert_eq!(keys(e), sorted(LIST_KEYS));
        for ts in ["event_date", "sale_start_date", "sale_end_date"] {
            assert!(is_wire_time(&e[ts]), "{ts}: {}", e[ts]);
        }
    }
    assert_eq!(events[0]["ticket_type_count"], "0");
    assert_eq!(events[0]["min_price"], Value::Null);
    assert_eq!(events[0]["max_price"], Value::Null);
    assert_eq!(events[0]["description"], Value::Null);
    assert_eq!(events[0]["status"], "on_sale");
    assert_eq!(events[0]["artist_name"], "TEST ARTIST");
    assert_eq!(events[1]["ticket_type_count"], "2");
    assert_eq!(events[1]["min_price"], 80000);
    assert_eq!(events[1]["max_price"], 120000);

    let (_, page1) = app.get("/api/events?page=1&limit=2", None).await;
    assert_eq!(ids(&page1), [first, second]);
    assert_eq!(
        page1["pagination"],
        json!({ "page": 1, "limit": 2, "total": 3, "totalPages": 2 })
    );
    let (_, page2) = app.get("/api/events?page=2&limit=2", None).await;
    assert_eq!(ids(&page2), [third]);
    assert_eq!(page2["pagination"]["page"], 2);
    let (_, page3) = app.get("/api/events?page=3&limit=2", None).await;
    assert_eq!(ids(&page3), Vec::<Uuid>::new());
    assert_eq!(page3["pagination"]["total"], 3);
}

#[tokio::test]
async fn events_list_filters_by_status() {
    let app = TestApp::spawn().await;
    let upcoming = app.insert_event("", "+1 day", "+2 days").await;
    let on_sale = app.insert_event("", "-1 day", "+1 day").await;
    let ended = app.insert_event("", "-2 days", "-1 day").await;

    for (status, expected) in [
        ("upcoming", upcoming),
        ("on_sale", on_sale),
        ("ended", ended),
    ] {
        let (code, body) = app.get(&format!("/api/events?status={status}"), None).await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(ids(&body), [expected], "{status}");
        assert_eq!(body["events"][0]["status"], status);
        assert_eq!(body["pagination"]["total"], 1);
    }
    let (_, body) = app.get("/api/events?status=cancelled", None).await;
    assert_eq!(body["events"], json!([]));
    assert_eq!(
        body["pagination"],
        json!({ "page": 1, "limit": 10, "total": 0, "totalPages": 0 })
    );
    let (_, body) = app.get("/api/events?status=", None).await;
    assert_eq!(
        body["pagination"]["total"], 3,
        "an empty status is no filter"
    );
}

#[tokio::test]
async fn events_search_matches_text_and_korean_keywords() {
    let app = TestApp::spawn().await;
    let bts = app.insert_event("", "-1 hour", "+1 day").await;
    set(&app, bts, "title", "WORLD TOUR 2030").await;
    set(&app, bts, "artist_name", "BTS").await;
    let iu = app.insert_event("", "-1 hour", "+1 day").await;
    set(&app, iu, "title", "아이유 콘서트").await;
    set(&app, iu, "artist_name", "아이유").await;
    let other = app.insert_event("", "-1 hour", "+1 day").await;
    set(&app, other, "address", "부산광역시 해운대구").await;

    let search = |q: &'static str| {
        let app = &app;
        async move {
            let url = format!(
                "/api/events?q={}",
                form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>()
            );
            let (status, body) = app.get(&url, None).await;
            assert_eq!(status, StatusCode::OK, "{q}: {body}");
            let mut found = ids(&body);
            found.sort();
            assert_eq!(body["pagination"]["total"], found.len(), "{q}");
            found
        }
    };
    assert_eq!(search("방탄").await, [bts], "keyword mapping 방탄 → BTS");
    assert_eq!(search("bts").await, [bts], "case-insensitive");
    assert_eq!(search("world tour").await, [bts]);
    assert_eq!(search("IU").await, [iu], "keyword mapping IU → 아이유");
    assert_eq!(search("해운대").await, [other], "address is searched");
    assert_eq!(search("  방탄  ").await, [bts], "q is trimmed");
    assert_eq!(search("없는공연").await, Vec::<Uuid>::new());
    assert_eq!(search("").await.len(), 3, "an empty q is no filter");

    let (_, body) = app
        .get("/api/events?q=%EB%B0%A9%ED%83%84&status=ended", None)
        .await;
    assert_eq!(body["events"], json!([]), "q and status combine");
}

#[tokio::test]
async fn events_search_like_wildcards_are_literal() {
    let app = TestApp::spawn().await;
    let percent = app.insert_event("", "-1 hour", "+1 day").await;
    set(&app, percent, "title", "100% LIVE").await;
    let plain = app.insert_event("", "-1 hour", "+1 day").await;
    set(&app, plain, "title", "PLAIN SHOW").await;

    let (_, body) = app.get("/api/events?q=%25", None).await;
    assert_eq!(ids(&body), [percent], "% matches only a literal %");
    let (_, body) = app.get("/api/events?q=_", None).await;
    assert_eq!(ids(&body), Vec::<Uuid>::new(), "_ matches only a literal _");
    let (_, body) = app.get("/api/events?q=P%25N", None).await;
    assert_eq!(ids(&body), Vec::<Uuid>::new());
}

#[tokio::test]
async fn events_detail_returns_event_and_ticket_types_by_price_desc() {
    let app = TestApp::spawn().await;
    let (event, general) = app.ticket_event(100).await;
    let vip = add_ticket_type(&app, event, "VIP석", 150000).await;
    let cheap = add_ticket_type(&app, event, "시야제한석", 30000).await;
    sqlx::query("UPDATE events SET event_date = '2030-01-01T19:00:00+09:00' WHERE id = $1")
        .bind(event)
        .execute(&app.db)
        .await
        .unwrap();

    let (status, body) = app.get(&format!("/api/events/{event}"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(keys(&body), sorted(&["event", "ticketTypes"]));
    let e = &body["event"];
    assert_eq!(keys(e), sorted(crate::common::EVENT_KEYS));
    assert_eq!(e["id"], event.to_string());
    assert_eq!(e["title"], "테스트 공연");
    assert_eq!(e["venue"], "테스트홀");
    assert_eq!(e["status"], "on_sale");
    assert_eq!(e["event_date"], "2030-01-01T10:00:00.000Z");
    assert_eq!(e["seat_layout_id"], Value::Null);
    assert_eq!(e["pre_scaled"], false);
    assert_eq!(e["created_by"], Value::Null);
    for ts in [
        "sale_start_date",
        "sale_end_date",
        "created_at",
        "updated_at",
    ] {
        assert!(is_wire_time(&e[ts]), "{ts}: {}", e[ts]);
    }

    let types = body["ticketTypes"].as_array().unwrap();
    let order: Vec<&str> = types.iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(
        order,
        [vip.to_string(), general.to_string(), cheap.to_string()]
    );
    for t in types {
        assert_eq!(keys(t), sorted(TICKET_TYPE_KEYS));
    }
    assert_eq!(
        types[1],
        json!({ "id": general, "name": "일반석", "price": 50000, "total_quantity": 100,
                "available_quantity": 100, "description": null })
    );

    // a seat-map event carries its layout id
    let (seat_event, _) = app.seat_event().await;
    let (_, body) = app.get(&format!("/api/events/{seat_event}"), None).await;
    assert!(body["event"]["seat_layout_id"].is_string());
    assert_eq!(body["ticketTypes"], json!([]));
}

#[tokio::test]
async fn events_detail_bad_id_is_400_and_unknown_is_404() {
    let app = TestApp::spawn().await;
    for bad in ["not-a-uuid", "123", "00000000-0000-0000-0000-00000000000g"] {
        assert_eq!(
            app.get(&format!("/api/events/{bad}"), None).await,
            (
                StatusCode::BAD_REQUEST,
                json!({ "error": "Invalid id format", "code": "INVALID_ID" })
            ),
            "{bad}"
        );
    }
    assert_eq!(
        app.get(&format!("/api/events/{}", Uuid::new_v4()), None)
            .await,
        (
            StatusCode::NOT_FOUND,
            json!({ "error": "이벤트를 찾을 수 없습니다.", "code": "EVENT_NOT_FOUND" })
        )
    );
}

#[tokio::test]
async fn events_admin_update_invalidates_the_cached_pages() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let event = app.insert_event("", "-1 hour", "+1 day").await;
    let detail = format!("/api/events/{event}");

    // fill both caches
    assert_eq!(
        app.get(&detail, None).await.1["event"]["title"],
        "테스트 공연"
    );
    assert_eq!(
        app.get("/api/events", None).await.1["events"][0]["title"],
        "테스트 공연"
    );

    // a direct DB change is not seen while cached
    set(&app, event, "venue", "몰래 바뀐 홀").await;
    assert_eq!(app.get(&detail, None).await.1["event"]["venue"], "테스트홀");

    let (status, body) = app
        .send(
            Method::PUT,
            &format!("/api/admin/events/{event}"),
            Some(&admin.token),
            Some(json!({ "title": "바뀐 제목" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (_, body) = app.get(&detail, None).await;
    assert_eq!(body["event"]["title"], "바뀐 제목");
    assert_eq!(body["event"]["venue"], "몰래 바뀐 홀");
    assert_eq!(
        app.get("/api/events", None).await.1["events"][0]["title"],
        "바뀐 제목"
    );
}

#[tokio::test]
async fn tickets_by_event_lists_ticket_types() {
    let app = TestApp::spawn().await;
    let (event, general) = app.ticket_event(10).await;
    let vip = add_ticket_type(&app, event, "VIP석", 150000).await;

    let (status, body) = app.get(&format!("/api/tickets/event/{event}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(keys(&body), sorted(&["ticketTypes"]));
    let types = body["ticketTypes"].as_array().unwrap();
    assert_eq!(types[0]["id"], vip.to_string(), "price DESC");
    assert_eq!(types[1]["id"], general.to_string());
    assert_eq!(keys(&types[0]), sorted(TICKET_TYPE_KEYS));

    assert_eq!(
        app.get(&format!("/api/tickets/event/{}", Uuid::new_v4()), None)
            .await,
        (StatusCode::OK, json!({ "ticketTypes": [] }))
    );
    assert_eq!(
        app.get("/api/tickets/event/nope", None).await,
        (
            StatusCode::BAD_REQUEST,
            json!({ "error": "Invalid eventId format", "code": "INVALID_ID" })
        )
    );
}

#[tokio::test]
async fn tickets_availability_of_a_ticket_type() {
    let app = TestApp::spawn().await;
    let (event, _) = app.ticket_event(10).await;
    let tt = add_ticket_type(&app, event, "R석", 100000).await;

    assert_eq!(
        app.get(&format!("/api/tickets/availability/{tt}"), None)
            .await,
        (
            StatusCode::OK,
            json!({ "available_quantity": 80, "total_quantity": 100 })
        )
    );
    assert_eq!(
        app.get("/api/tickets/availability/nope", None).await,
        (
            StatusCode::BAD_REQUEST,
            json!({ "error": "Invalid ticketTypeId format", "code": "INVALID_ID" })
        )
    );
    assert_eq!(
        app.get(
            &format!("/api/tickets/availability/{}", Uuid::new_v4()),
            None
        )
        .await,
        (
            StatusCode::NOT_FOUND,
            json!({ "error": "티켓 타입을 찾을 수 없습니다.", "code": "TICKET_TYPE_NOT_FOUND" })
        )
    );
}

#[tokio::test]
async fn events_cached_pages_follow_changes_at_once_here_and_within_a_second_elsewhere() {
    let a = TestApp::spawn().await;
    let b = a.replica().await;
    let (event, ticket_type) = a.ticket_event(10).await;
    let user = a.user().await;
    let path = format!("/api/events/{event}");
    let available = |body: &Value| body["ticketTypes"][0]["available_quantity"].clone();
    // both replicas have the page cached (memory and Redis)
    assert_eq!(available(&a.get(&path, None).await.1), 10);
    assert_eq!(available(&b.get(&path, None).await.1), 10);

    let (status, _) = a
        .post(
            "/api/reservations",
            Some(&user.token),
            json!({ "eventId": event, "items": [{ "ticketTypeId": ticket_type, "quantity": 3 }] }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    // the replica that made the change answers from fresh data at once ...
    assert_eq!(available(&a.get(&path, None).await.1), 7);
    // ... the other once its one-second memory copy has expired
    let caught_up = eventually(std::time::Duration::from_secs(3), || async {
        available(&b.get(&path, None).await.1) == 7
    })
    .await;
    assert!(caught_up, "the other replica kept serving the old page");
}

/// How many cached event-list pages the test's Redis prefix holds (on every primary of a cluster).
async fn list_pages_in_redis(app: &TestApp) -> usize {
    use fred::interfaces::ClientLike;
    use futures::TryStreamExt;
    let pattern = format!("{}:events:list:*", app.config.redis_prefix);
    let client = app.state.redis.next();
    let keys: Vec<_> = if client.is_clustered() {
        client
            .scan_cluster_buffered(pattern, Some(1000), None)
            .try_collect()
            .await
    } else {
        client
            .scan_buffered(pattern, Some(1000), None)
            .try_collect()
            .await
    }
    .unwrap();
    keys.len()
}

#[tokio::test]
async fn events_list_cache_keys_come_only_from_normal_parameters() {
    let app = TestApp::spawn().await;
    for _ in 0..3 {
        app.ticket_event(10).await;
    }
    let (status, body) = app.get("/api/events?status=on_sale", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&body).len(), 3);
    assert_eq!(list_pages_in_redis(&app).await, 1);

    // 1,000 requests that differ only in an unusual limit, a far page, an unknown status, an
    // unknown parameter or a search text
    let paths: Vec<String> = (0..1000)
        .map(|i| match i % 5 {
            0 => format!("/api/events?status=on_sale&limit={}", 11 + i),
            1 => format!("/api/events?status=on_sale&page={}", 21 + i),
            2 => format!("/api/events?status=x{i}"),
            3 => format!("/api/events?status=on_sale&utm={i}"),
            _ => format!("/api/events?q=nothing{i}"),
        })
        .collect();
    for chunk in paths.chunks(50) {
        let answers = futures::future::join_all(chunk.iter().map(|p| app.get(p, None))).await;
        for (status, body) in answers {
            assert_eq!(status, StatusCode::OK, "{body}");
        }
    }
    // at most one more page: limits past 1,000 are clamped, and share the `limit=1000` page
    let pages = list_pages_in_redis(&app).await;
    assert!(pages <= 2, "{pages} pages cached in Redis after the flood");

    // the answers themselves are unchanged by not being cached
    let (_, body) = app.get("/api/events?status=on_sale&limit=11", None).await;
    assert_eq!(body["pagination"]["limit"], 11);
    assert_eq!(ids(&body).len(), 3);
    let (_, body) = app.get("/api/events?status=on_sale&page=30", None).await;
    assert_eq!(body["pagination"]["page"], 30);
    assert_eq!(ids(&body).len(), 0);
}
