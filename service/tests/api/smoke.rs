//! The harness itself works: a service answers with demo-free data on its own database.

use reqwest::StatusCode;

use crate::common::TestApp;

#[tokio::test]
async fn smoke_events_list_is_empty_on_a_fresh_database() {
    let app = TestApp::spawn().await;
    let (status, body) = app.get("/api/events", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["events"].as_array().unwrap().len(), 0);
    assert_eq!(body["pagination"]["total"], 0);
}
