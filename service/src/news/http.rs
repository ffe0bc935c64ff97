//! `/api/news*`.

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    routing::get,
};
use serde_json::{Value, json};
use sqlx::AssertSqlSafe;
use tiketi_core::rules::total_pages;
use uuid::Uuid;

use crate::{
    error::{Code, Error, OrMessage, Result},
    events::http::paging,
    extract::{AuthUser, Fields, JsonBody, QueryParams, path_id},
    state::AppState,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/news", get(list).post(create))
        .route("/api/news/{id}", get(one).put(update).delete(remove))
}

const NEWS_JSON: &str =
    "json_build_object('id', n.id, 'title', n.title, 'content', n.content, 'author', n.author,
    'author_id', n.author_id, 'views', n.views, 'is_pinned', n.is_pinned,
    'created_at', wire_ts(n.created_at), 'updated_at', wire_ts(n.updated_at))";

const MSG_NOT_FOUND: &str = "뉴스를 찾을 수 없습니다.";

async fn list(State(state): State<AppState>, QueryParams(q): QueryParams) -> Result<Json<Value>> {
    let (page, limit) = paging(
        q.get("page").map(String::as_str),
        q.get("limit").map(String::as_str),
        20,
    );
    async {
        let sql = format!(
            "SELECT coalesce(json_agg({NEWS_JSON} ORDER BY n.is_pinned DESC, n.created_at DESC), '[]'::json)
             FROM (SELECT * FROM news ORDER BY is_pinned DESC, created_at DESC LIMIT $1 OFFSET $2) n"
        );
        let news: Value = sqlx::query_scalar(AssertSqlSafe(sql)).bind(limit).bind((page - 1) * limit).fetch_one(&state.db).await?;
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM news").fetch_one(&state.db).await?;
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
        let sql =
            format!("UPDATE news n SET views = views + 1 WHERE id = $1 RETURNING {NEWS_JSON}");
        let news: Option<Value> = sqlx::query_scalar(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&state.db)
            .await?;
        let news = news.ok_or_else(|| Error::not_found(Code::NewsNotFound, MSG_NOT_FOUND))?;
        Ok(Json(json!({ "news": news })))
    }
    .await
    .or_message("뉴스를 불러오는데 실패했습니다.")
}

/// Title and content limits (the column is VARCHAR(255); content is bounded by the body limit).
fn title_ok(t: &str) -> bool {
    t.chars().count() <= 255
}

async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<Value>)> {
    let (Some(title), Some(content)) = (body.text("title"), body.text("content")) else {
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
        let sql = format!(
            "INSERT INTO news AS n (title, content, author, author_id, is_pinned)
             SELECT $1, $2, u.name, u.id, $3 AND u.role = 'admin' FROM users u WHERE u.id = $4
             RETURNING {NEWS_JSON}"
        );
        let pinned = body.bool_of("is_pinned").unwrap_or(false);
        let news: Option<Value> = sqlx::query_scalar(AssertSqlSafe(sql))
            .bind(&title)
            .bind(&content)
            .bind(pinned)
            .bind(user.id)
            .fetch_optional(&state.db)
            .await?;
        let news = news.ok_or_else(|| {
            Error::bad_request(Code::AuthorNotFound, "존재하지 않는 작성자입니다.")
        })?;
        Ok((StatusCode::CREATED, Json(json!({ "news": news }))))
    }
    .await
    .or_message("뉴스 작성에 실패했습니다.")
}

async fn author_of(state: &AppState, id: Uuid) -> Result<Option<Uuid>> {
    let row: Option<Option<Uuid>> = sqlx::query_scalar("SELECT author_id FROM news WHERE id = $1")
        .bind(id)
        .fetch_optional(&state.db)
        .await?;
    row.ok_or_else(|| Error::not_found(Code::NewsNotFound, MSG_NOT_FOUND))
}

async fn update(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>> {
    let id = path_id(&id, "Invalid id format")?;
    let (Some(title), Some(content)) = (body.text("title"), body.text("content")) else {
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
            return Err(Error::forbidden(Code::NotOwner, "작성자만 수정할 수 있습니다."));
        }
        let pinned = body.bool_of("is_pinned").filter(|_| user.is_admin());
        let sql = format!(
            "UPDATE news n SET title = $2, content = $3, is_pinned = coalesce($4, is_pinned) WHERE id = $1 RETURNING {NEWS_JSON}"
        );
        let news: Option<Value> = sqlx::query_scalar(AssertSqlSafe(sql)).bind(id).bind(&title).bind(&content).bind(pinned).fetch_optional(&state.db).await?;
        let news = news.ok_or_else(|| Error::not_found(Code::NewsNotFound, MSG_NOT_FOUND))?;
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
        sqlx::query("DELETE FROM news WHERE id = $1")
            .bind(id)
            .execute(&state.db)
            .await?;
        Ok(Json(json!({ "message": "뉴스가 삭제되었습니다." })))
    }
    .await
    .or_message("뉴스 삭제에 실패했습니다.")
}
