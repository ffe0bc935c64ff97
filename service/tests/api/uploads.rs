//! `POST /api/image/upload` (admin only) and serving the stored file back under `/uploads/`.

use reqwest::{
    Method, StatusCode, header,
    multipart::{Form, Part},
};
use serde_json::{Value, json};

use crate::common::{TestApp, read};

/// A 1×1 transparent PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0a, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x00, 0x01, 0x00, 0x00,
    0x05, 0x00, 0x01, 0x0d, 0x0a, 0x2d, 0xb4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae,
    0x42, 0x60, 0x82,
];

const MSG_IMAGE_REQUIRED: &str = "이미지 파일이 필요합니다.";

fn image_form(field: &str, bytes: Vec<u8>, file_name: &str, mime: &str) -> Form {
    Form::new().part(
        field.to_string(),
        Part::bytes(bytes)
            .file_name(file_name.to_string())
            .mime_str(mime)
            .unwrap(),
    )
}

async fn upload(app: &TestApp, token: Option<&str>, form: Form) -> (StatusCode, Value) {
    read(
        app.req(Method::POST, "/api/image/upload", token)
            .multipart(form)
            .send()
            .await
            .expect("request"),
    )
    .await
}

#[tokio::test]
async fn uploads_require_an_admin() {
    let app = TestApp::spawn().await;
    let form = || image_form("image", PNG.to_vec(), "poster.png", "image/png");
    let (status, body) = upload(&app, None, form()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body,
        json!({ "error": "인증이 필요합니다.", "code": "AUTH_REQUIRED" })
    );
    let user = app.user().await;
    let (status, body) = upload(&app, Some(&user.token), form()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        body,
        json!({ "error": "관리자 권한이 필요합니다.", "code": "ADMIN_ONLY" })
    );
    let stored = std::fs::read_dir(&app.state.config.upload_dir)
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(stored, 0, "nothing is stored for a refused upload");
}

#[tokio::test]
async fn uploads_png_is_stored_and_served_back() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let (status, body) = upload(
        &app,
        Some(&admin.token),
        image_form("image", PNG.to_vec(), "poster.png", "image/png"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let obj = body.as_object().unwrap();
    let mut k: Vec<&str> = obj.keys().map(String::as_str).collect();
    k.sort_unstable();
    assert_eq!(k, ["key", "url"]);
    let key = body["key"].as_str().unwrap();
    let url = body["url"].as_str().unwrap();
    assert!(key.starts_with("files/") && key.ends_with(".png"), "{key}");
    assert!(url.starts_with("http"), "{url}");
    assert!(url.ends_with(&format!("/uploads/{key}")), "{url}");

    let path = &url[url.find("/uploads/").unwrap()..];
    let resp = app.req(Method::GET, path, None).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        Some("image/png")
    );
    assert_eq!(resp.bytes().await.unwrap().as_ref(), PNG);
}

#[tokio::test]
async fn uploads_content_not_an_image_is_refused() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    // the name and the declared type say PNG; the content does not
    let (status, body) = upload(
        &app,
        Some(&admin.token),
        image_form(
            "image",
            b"hello, world\n".to_vec(),
            "poster.png",
            "image/png",
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({ "error": "이미지 파일(PNG, JPEG, GIF, WebP)만 업로드할 수 있습니다.", "code": "INVALID_IMAGE" })
    );
    let (status, _) = upload(
        &app,
        Some(&admin.token),
        image_form("image", b"plain text".to_vec(), "notes.txt", "text/plain"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn uploads_without_an_image_are_refused() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let expected = json!({ "error": MSG_IMAGE_REQUIRED, "code": "INVALID_IMAGE" });

    let (status, body) = upload(
        &app,
        Some(&admin.token),
        image_form("image", Vec::new(), "empty.png", "image/png"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, expected, "empty file");

    let (status, body) = upload(
        &app,
        Some(&admin.token),
        image_form("file", PNG.to_vec(), "poster.png", "image/png"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, expected, "wrong field name");

    let (status, body) = upload(&app, Some(&admin.token), Form::new().text("title", "x")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, expected, "no file at all");

    // not multipart at all (the original's multer also left req.file unset)
    let (status, body) = app
        .post("/api/image/upload", Some(&admin.token), json!({}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, expected, "JSON body");
}

#[tokio::test]
async fn uploads_over_5_mb_are_refused_with_json() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    for size in [5 * 1024 * 1024 + 1, 6 * 1024 * 1024] {
        let mut bytes = PNG.to_vec();
        bytes.resize(size, 0);
        let (status, body) = upload(
            &app,
            Some(&admin.token),
            image_form("image", bytes, "big.png", "image/png"),
        )
        .await;
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::PAYLOAD_TOO_LARGE,
            "{size} bytes: {status}"
        );
        assert_eq!(
            body,
            json!({ "error": "이미지는 5MB 이하만 업로드할 수 있습니다.", "code": "INVALID_IMAGE" }),
            "{size} bytes"
        );
    }
    let stored = std::fs::read_dir(app.state.config.upload_dir.join("files"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(stored, 0);
}
