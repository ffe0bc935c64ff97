//! `POST /api/image/upload` (admin only): poster images checked by content, stored in `UPLOAD_DIR`
//! and served back under `/uploads/`.

use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, Multipart, State, multipart::MultipartRejection},
    routing::post,
};
use serde_json::{Value, json};
use tower_http::services::ServeDir;

use crate::{
    error::{Code, Error, Result},
    extract::AuthUser,
    state::AppState,
};

pub const MAX_IMAGE_BYTES: usize = 5 * 1024 * 1024;
const MSG_IMAGE_REQUIRED: &str = "이미지 파일이 필요합니다.";

/// The upload route (written out in `router` too: the access audit reads route literals).
pub const UPLOAD_PATH: &str = "/api/image/upload";

pub fn router(state: &AppState) -> Router<AppState> {
    Router::new()
        .route(
            "/api/image/upload",
            post(upload).layer(DefaultBodyLimit::max(MAX_IMAGE_BYTES + 64 * 1024)),
        )
        .nest_service("/uploads", ServeDir::new(&state.config.upload_dir))
}

/// The image type by its magic bytes (the client's content type and file name are not trusted).
pub fn sniff(bytes: &[u8]) -> Option<&'static str> {
    match bytes {
        [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, ..] => Some("png"),
        [0xff, 0xd8, 0xff, ..] => Some("jpg"),
        [b'G', b'I', b'F', b'8', b'7' | b'9', b'a', ..] => Some("gif"),
        [
            b'R',
            b'I',
            b'F',
            b'F',
            _,
            _,
            _,
            _,
            b'W',
            b'E',
            b'B',
            b'P',
            ..,
        ] => Some("webp"),
        _ => None,
    }
}

async fn upload(
    State(state): State<AppState>,
    user: AuthUser,
    form: std::result::Result<Multipart, MultipartRejection>,
) -> Result<Json<Value>> {
    user.require_admin()?;
    // a body that is not multipart carries no image (the original's multer left req.file unset)
    let mut form = form.map_err(|_| Error::bad_request(Code::InvalidImage, MSG_IMAGE_REQUIRED))?;
    let too_big = || {
        Error::bad_request(
            Code::InvalidImage,
            "이미지는 5MB 이하만 업로드할 수 있습니다.",
        )
    };
    let mut image = None;
    while let Some(field) = form.next_field().await.map_err(|e| {
        if e.status().as_u16() == 413 {
            too_big()
        } else {
            Error::bad_request(Code::InvalidInput, e.body_text())
        }
    })? {
        if field.name() == Some("image") {
            let bytes = field.bytes().await.map_err(|e| {
                if e.status().as_u16() == 413 {
                    too_big()
                } else {
                    Error::bad_request(Code::InvalidInput, e.body_text())
                }
            })?;
            image = Some(bytes);
            break;
        }
    }
    let bytes = image
        .filter(|b| !b.is_empty())
        .ok_or_else(|| Error::bad_request(Code::InvalidImage, MSG_IMAGE_REQUIRED))?;
    if bytes.len() > MAX_IMAGE_BYTES {
        return Err(too_big());
    }
    let ext = sniff(&bytes).ok_or_else(|| {
        Error::bad_request(
            Code::InvalidImage,
            "이미지 파일(PNG, JPEG, GIF, WebP)만 업로드할 수 있습니다.",
        )
    })?;
    let key = format!(
        "files/{}_{}.{ext}",
        chrono::Utc::now().timestamp_millis(),
        uuid::Uuid::new_v4().simple()
    );
    let path = state.config.upload_dir.join(&key);
    async {
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        tokio::fs::write(&path, &bytes).await
    }
    .await
    .map_err(|e| Error::Internal {
        source: e.into(),
        message: Some("이미지 업로드에 실패했습니다."),
    })?;
    Ok(Json(
        json!({ "url": format!("{}/uploads/{key}", state.config.public_url()), "key": key }),
    ))
}
