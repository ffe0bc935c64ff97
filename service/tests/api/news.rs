//! `/api/news*`: list, detail, create, update (author only), delete (author or admin).

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::{TestApp, User, is_wire_time, keys, sorted};

const NEWS_KEYS: &[&str] = &[
    "id",
    "title",
    "content",
    "author",
    "author_id",
    "views",
    "is_pinned",
    "created_at",
    "updated_at",
];

fn not_found() -> (StatusCode, Value) {
    (
        StatusCode::NOT_FOUND,
        json!({ "error": "뉴스를 찾을 수 없습니다.", "code": "NEWS_NOT_FOUND" }),
    )
}

fn invalid_id() -> (StatusCode, Value) {
    (
        StatusCode::BAD_REQUEST,
        json!({ "error": "Invalid id format", "code": "INVALID_ID" }),
    )
}

/// Posts a news item as `user`; returns its JSON.
async fn create(app: &TestApp, user: &User, title: &str, pinned: bool) -> Value {
    let (status, body) = app
        .post(
            "/api/news",
            Some(&user.token),
            json!({ "title": title, "content": "본문", "is_pinned": pinned }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["news"].clone()
}

async fn put(app: &TestApp, user: &User, id: &str, body: Value) -> (StatusCode, Value) {
    app.send(
        Method::PUT,
        &format!("/api/news/{id}"),
        Some(&user.token),
        Some(body),
    )
    .await
}

async fn delete(app: &TestApp, user: &User, id: &str) -> (StatusCode, Value) {
    app.send(
        Method::DELETE,
        &format!("/api/news/{id}"),
        Some(&user.token),
        None,
    )
    .await
}

#[tokio::test]
async fn news_create_makes_the_caller_the_author() {
    let app = TestApp::spawn().await;
    let user = app.user().await;
    let someone_else = app.user().await;
    let (status, body) = app
        .post(
            "/api/news",
            Some(&user.token),
            json!({ "title": " 공지 ", "content": "내용입니다", "author": "관리자", "author_id": someone_else.id, "is_pinned": true }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(keys(&body), sorted(&["news"]));
    let news = &body["news"];
    assert_eq!(keys(news), sorted(NEWS_KEYS));
    assert_eq!(news["title"], "공지");
    assert_eq!(news["content"], "내용입니다");
    assert_eq!(
        news["author_id"],
        user.id.to_string(),
        "author_id is the caller"
    );
    assert_eq!(
        news["author"], "테스트",
        "author is the caller's name, whatever the body says"
    );
    assert_eq!(news["is_pinned"], false, "only admins may pin");
    assert_eq!(news["views"], 0);
    assert!(is_wire_time(&news["created_at"]) && is_wire_time(&news["updated_at"]));

    let admin = app.admin().await;
    let pinned = create(&app, &admin, "관리자 공지", true).await;
    assert_eq!(pinned["is_pinned"], true);
    assert_eq!(pinned["author_id"], admin.id.to_string());
    assert_eq!(pinned["author"], "관리자");
}

#[tokio::test]
async fn news_create_requires_title_content_and_login() {
    let app = TestApp::spawn().await;
    let user = app.user().await;
    let missing = (
        StatusCode::BAD_REQUEST,
        json!({ "error": "제목, 내용, 작성자는 필수입니다.", "code": "INVALID_INPUT" }),
    );
    for body in [
        json!({ "content": "본문" }),
        json!({ "title": "제목" }),
        json!({ "title": "  ", "content": "본문" }),
        json!({ "title": "제목", "content": "" }),
    ] {
        assert_eq!(
            app.post("/api/news", Some(&user.token), body.clone()).await,
            missing,
            "{body}"
        );
    }
    assert_eq!(
        app.post(
            "/api/news",
            None,
            json!({ "title": "제목", "content": "본문" })
        )
        .await,
        (
            StatusCode::UNAUTHORIZED,
            json!({ "error": "인증이 필요합니다.", "code": "AUTH_REQUIRED" })
        )
    );
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM news")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(count, 0);
}

#[tokio::test]
async fn news_list_pinned_first_then_newest_with_pagination() {
    let app = TestApp::spawn().await;
    let user = app.user().await;
    let admin = app.admin().await;
    let old = create(&app, &user, "첫 글", false).await;
    let pinned = create(&app, &admin, "고정 공지", true).await;
    let new = create(&app, &user, "새 글", false).await;

    let (status, body) = app.get("/api/news", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(keys(&body), sorted(&["news", "pagination"]));
    let order: Vec<&Value> = body["news"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| &n["id"])
        .collect();
    assert_eq!(order, [&pinned["id"], &new["id"], &old["id"]]);
    assert_eq!(keys(&body["news"][0]), sorted(NEWS_KEYS));
    assert_eq!(
        body["pagination"],
        json!({ "page": 1, "limit": 20, "total": 3, "totalPages": 1 })
    );

    let (_, body) = app.get("/api/news?page=2&limit=2", None).await;
    assert_eq!(body["news"].as_array().unwrap().len(), 1);
    assert_eq!(body["news"][0]["id"], old["id"]);
    assert_eq!(
        body["pagination"],
        json!({ "page": 2, "limit": 2, "total": 3, "totalPages": 2 })
    );
}

#[tokio::test]
async fn news_detail_counts_views() {
    let app = TestApp::spawn().await;
    let user = app.user().await;
    let news = create(&app, &user, "조회수", false).await;
    let path = format!("/api/news/{}", news["id"].as_str().unwrap());

    let (status, body) = app.get(&path, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(keys(&body), sorted(&["news"]));
    assert_eq!(keys(&body["news"]), sorted(NEWS_KEYS));
    assert_eq!(body["news"]["views"], 1);
    assert_eq!(body["news"]["title"], "조회수");
    let (_, body) = app.get(&path, None).await;
    assert_eq!(body["news"]["views"], 2);
    assert_eq!(
        body["news"]["updated_at"], news["updated_at"],
        "a view is not an edit"
    );

    assert_eq!(app.get("/api/news/abc", None).await, invalid_id());
    assert_eq!(
        app.get(&format!("/api/news/{}", Uuid::new_v4()), None)
            .await,
        not_found()
    );
}

#[tokio::test]
async fn news_update_only_by_the_author() {
    let app = TestApp::spawn().await;
    let author = app.user().await;
    let other = app.user().await;
    let admin = app.admin().await;
    let news = create(&app, &author, "원래 제목", false).await;
    let id = news["id"].as_str().unwrap();
    let edit = json!({ "title": "수정 제목", "content": "수정 본문" });

    let forbidden = (
        StatusCode::FORBIDDEN,
        json!({ "error": "작성자만 수정할 수 있습니다.", "code": "NOT_OWNER" }),
    );
    assert_eq!(put(&app, &other, id, edit.clone()).await, forbidden);
    assert_eq!(
        put(&app, &admin, id, edit.clone()).await,
        forbidden,
        "admins cannot edit others' posts"
    );

    let required = (
        StatusCode::BAD_REQUEST,
        json!({ "error": "제목과 내용은 필수입니다.", "code": "INVALID_INPUT" }),
    );
    assert_eq!(
        put(&app, &author, id, json!({ "title": "제목만" })).await,
        required
    );
    assert_eq!(
        put(&app, &author, id, json!({ "content": "본문만" })).await,
        required
    );

    let (status, body) = put(&app, &author, id, edit.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(keys(&body), sorted(&["news"]));
    assert_eq!(body["news"]["title"], "수정 제목");
    assert_eq!(body["news"]["content"], "수정 본문");
    assert_eq!(body["news"]["author_id"], author.id.to_string());
    assert_eq!(body["news"]["is_pinned"], false);

    // a user's is_pinned is ignored; an admin pins their own post
    let (_, body) = put(
        &app,
        &author,
        id,
        json!({ "title": "t", "content": "c", "is_pinned": true }),
    )
    .await;
    assert_eq!(body["news"]["is_pinned"], false);
    let own = create(&app, &admin, "관리자 글", false).await;
    let (status, body) = put(
        &app,
        &admin,
        own["id"].as_str().unwrap(),
        json!({ "title": "관리자 글", "content": "c", "is_pinned": true }),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["news"]["is_pinned"], true);

    assert_eq!(
        put(&app, &author, &Uuid::new_v4().to_string(), edit.clone()).await,
        not_found()
    );
    assert_eq!(put(&app, &author, "abc", edit).await, invalid_id());
}

#[tokio::test]
async fn news_delete_by_the_author_or_an_admin() {
    let app = TestApp::spawn().await;
    let author = app.user().await;
    let other = app.user().await;
    let admin = app.admin().await;
    let first = create(&app, &author, "첫 글", false).await;
    let second = create(&app, &author, "둘째 글", false).await;
    let first_id = first["id"].as_str().unwrap();
    let second_id = second["id"].as_str().unwrap();
    let deleted = (
        StatusCode::OK,
        json!({ "message": "뉴스가 삭제되었습니다." }),
    );

    assert_eq!(
        delete(&app, &other, first_id).await,
        (
            StatusCode::FORBIDDEN,
            json!({ "error": "삭제 권한이 없습니다.", "code": "NOT_OWNER" })
        )
    );
    assert_eq!(delete(&app, &author, first_id).await, deleted);
    assert_eq!(
        app.get(&format!("/api/news/{first_id}"), None).await,
        not_found()
    );
    assert_eq!(delete(&app, &author, first_id).await, not_found());

    assert_eq!(
        delete(&app, &admin, second_id).await,
        deleted,
        "admins delete any post"
    );
    assert_eq!(app.get("/api/news", None).await.1["pagination"]["total"], 0);

    assert_eq!(delete(&app, &author, "abc").await, invalid_id());
    assert_eq!(
        app.send(
            Method::DELETE,
            &format!("/api/news/{second_id}"),
            None,
            None
        )
        .await
        .0,
        StatusCode::UNAUTHORIZED
    );
}

/// The view count as stored.
async fn stored_views(app: &TestApp, id: Uuid) -> i32 {
    sqlx::query_scalar("SELECT views FROM news WHERE id = $1")
        .bind(id)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn news_reads_do_not_update_the_row_per_read() {
    // no periodic flush during the test: only the explicit one below writes
    let app = TestApp::spawn_with(|c| c.news_views_flush_ms = 3_600_000).await;
    let user = app.user().await;
    let news = create(&app, &user, "인기글", false).await;
    let id: Uuid = news["id"].as_str().unwrap().parse().unwrap();
    let path = format!("/api/news/{id}");

    for n in 1..=25 {
        let (status, body) = app.get(&path, None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["news"]["views"], n, "each answer counts its own view");
    }
    assert_eq!(stored_views(&app, id).await, 0, "no UPDATE per read");

    let written = tiketi_service::news::views::flush(&app.state)
        .await
        .unwrap();
    assert_eq!(written, 25, "one batch carries every read");
    assert_eq!(stored_views(&app, id).await, 25);
    let (_, body) = app.get(&path, None).await;
    assert_eq!(body["news"]["views"], 26);
    assert_eq!(body["news"]["updated_at"], news["updated_at"]);
}

#[tokio::test]
async fn news_views_from_every_replica_add_up() {
    let a = TestApp::spawn_with(|c| c.news_views_flush_ms = 100).await;
    let b = a.replica().await;
    let user = a.user().await;
    let news = create(&a, &user, "두 서버", false).await;
    let id: Uuid = news["id"].as_str().unwrap().parse().unwrap();
    let path = format!("/api/news/{id}");
    for _ in 0..7 {
        assert_eq!(a.get(&path, None).await.0, StatusCode::OK);
        assert_eq!(b.get(&path, None).await.0, StatusCode::OK);
    }
    let counted = crate::common::eventually(std::time::Duration::from_secs(5), || async {
        stored_views(&a, id).await == 14
    })
    .await;
    assert!(counted, "stored views: {}", stored_views(&a, id).await);
}
