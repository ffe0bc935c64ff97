//! `/api/news*`.

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    routing::get,
};
use serde::Deserialize;
use serde_json::{Value, json};
use tiketi_core::rules::total_pages;
use uuid::Uuid;

use super::db;
use crate::{
    body::{Body, Field},
    error::{Code, Error, OrMessage, Result},
    events::http::paging,
    extract::{AuthUser, QueryParams, path_id},
    state::AppState,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/news", get(list).post(create))
        .route("/api/news/{id}", get(one).put(update).delete(remove))
}

const MSG_NOT_FOUND: &str = "뉴스를 찾을 수 없습니다.";

async fn list(State(state): State<AppState>, QueryParams(q): QueryParams) -> Result<Json<Value>> {
    let (page, limit) = paging(
        q.get("page").map(String::as_str),
        q.get("limit").map(String::as_str),
        20,
    );
    async {
        let (news, total) = db::list(&state.db, limit, (page - 1) * limit).await?;
        Ok(Json(json!({
            "news": news,
            "pagination": { "page": page, "limit": limit, "total": total, "totalPages": total_pages(total, limit) },
        })))
    }
    .await
    .or_message("뉴스 목록을 불러오는데 실패했습니다.")
}

async fn one(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>> {
    let id = path_id(&id, "Invalid id format")?;
    async {
        let mut news = db::find(&state.db, id)
            .await?
            .ok_or_else(|| Error::not_found(Code::NewsNotFound, MSG_NOT_FOUND))?;
        // counted in memory and written in batches; the answer includes this view, as before
        let pending = state.news_views.add(id);
        news.views =
            i32::try_from(i64::from(news.views).saturating_add(pending)).unwrap_or(i32::MAX);
        Ok(Json(json!({ "news": news })))
    }
    .await
    .or_message("뉴스를 불러오는데 실패했습니다.")
}

/// Title and content limits (the column is VARCHAR(255); content is bounded by the body limit).
fn title_ok(t: &str) -> bool {
    t.chars().count() <= 255
}

/// `POST /api/news` and `PUT /api/news/:id` (`author`/`author_id` are ignored: the author is the
/// caller).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct NewsBody {
    #[serde(default)]
    #[schema(value_type = String)]
    title: Field<String>,
    #[serde(default)]
    #[schema(value_type = String)]
    content: Field<String>,
    #[serde(default)]
    #[schema(value_type = bool)]
    is_pinned: Field<bool>,
}

async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    Body(body): Body<NewsBody>,
) -> Result<(StatusCode, Json<Value>)> {
    let (Some(title), Some(content)) = (body.title.text(), body.content.text()) else {
        return Err(Error::bad_request(
            Code::InvalidInput,
            "제목, 내용, 작성자는 필수입니다.",
        ));
    };
    if !title_ok(&title) {
        return Err(Error::bad_request(
            Code::InvalidInput,
            "제목은 255자 이하여야 합니다.",
        ));
    }
    async {
        // The author is the caller (the original trusted `author`/`author_id` from the client);
        // only admins may pin.
        let pinned = body.is_pinned.get().copied().unwrap_or(false);
        let news = db::create(&state.db, &title, &content, pinned, user.id)
            .await?
            .ok_or_else(|| {
                Error::bad_request(Code::AuthorNotFound, "존재하지 않는 작성자입니다.")
            })?;
        Ok((StatusCode::CREATED, Json(json!({ "news": news }))))
    }
    .await
    .or_message("뉴스 작성에 실패했습니다.")
}

async fn author_of(state: &AppState, id: Uuid) -> Result<Option<Uuid>> {
    db::author_of(&state.db, id)
        .await?
        .ok_or_else(|| Error::not_found(Code::NewsNotFound, MSG_NOT_FOUND))
}

async fn update(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
    Body(body): Body<NewsBody>,
) -> Result<Json<Value>> {
    let id = path_id(&id, "Invalid id format")?;
    let (Some(title), Some(content)) = (body.title.text(), body.content.text()) else {
        return Err(Error::bad_request(
            Code::InvalidInput,
            "제목과 내용은 필수입니다.",
        ));
    };
    if !title_ok(&title) {
        return Err(Error::bad_request(
            Code::InvalidInput,
            "제목은 255자 이하여야 합니다.",
        ));
    }
    async {
        if author_of(&state, id).await? != Some(user.id) {
            return Err(Error::forbidden(
                Code::NotOwner,
                "작성자만 수정할 수 있습니다.",
            ));
        }
        let pinned = body.is_pinned.get().copied().filter(|_| user.is_admin());
        let news = db::update(&state.db, id, &title, &content, pinned)
            .await?
            .ok_or_else(|| Error::not_found(Code::NewsNotFound, MSG_NOT_FOUND))?;
        Ok(Json(json!({ "news": news })))
    }
    .await
    .or_message("뉴스 수정에 실패했습니다.")
}

async fn remove(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let id = path_id(&id, "Invalid id format")?;
    async {
        if author_of(&state, id).await? != Some(user.id) && !user.is_admin() {
            return Err(Error::forbidden(Code::NotOwner, "삭제 권한이 없습니다."));
        }
        db::delete(&state.db, id).await?;
        Ok(Json(json!({ "message": "뉴스가 삭제되었습니다." })))
    }
    .await
    .or_message("뉴스 삭제에 실패했습니다.")
}
