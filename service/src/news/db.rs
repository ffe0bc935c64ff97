//! SQL of news posts.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct News {
    pub id: Uuid,
    pub title: String,
    pub content: String,
    pub author: String,
    pub author_id: Option<Uuid>,
    pub views: i32,
    pub is_pinned: bool,
    #[serde(with = "tiketi_core::time::wire")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "tiketi_core::time::wire")]
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str =
    "id, title, content, author, author_id, views, is_pinned, created_at, updated_at";

/// One page, pinned first then newest; and how many posts there are.
pub async fn list(db: &PgPool, limit: i64, offset: i64) -> sqlx::Result<(Vec<News>, i64)> {
    let news = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM news ORDER BY is_pinned DESC, created_at DESC LIMIT $1 OFFSET $2"
    )))
    .bind(limit)
    .bind(offset)
    .fetch_all(db)
    .await?;
    let total = sqlx::query_scalar("SELECT count(*) FROM news")
        .fetch_one(db)
        .await?;
    Ok((news, total))
}

/// Reads a post (its views are counted apart: `views.rs`).
pub async fn find(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<News>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM news WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(db)
    .await
}

/// Adds `views[i]` to the count of post `ids[i]`, in one statement (rows in id order, so two
/// replicas flushing at once cannot deadlock); deleted posts are skipped.
pub async fn add_views(db: impl PgExecutor<'_>, ids: &[Uuid], views: &[i64]) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE news n SET views = LEAST(n.views::BIGINT + v.n, 2147483647)::INT
         FROM (SELECT id, sum(n) AS n FROM unnest($1::UUID[], $2::BIGINT[]) AS u(id, n) GROUP BY id ORDER BY id) v
         WHERE n.id = v.id",
    )
    .bind(ids)
    .bind(views)
    .execute(db)
    .await?;
    Ok(())
}

/// Writes a post by `author` (pinned only if asked and the author is an admin); `None` when the
/// author does not exist.
pub async fn create(
    db: impl PgExecutor<'_>,
    title: &str,
    content: &str,
    pinned: bool,
    author: Uuid,
) -> sqlx::Result<Option<News>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO news (title, content, author, author_id, is_pinned)
         SELECT $1, $2, u.name, u.id, $3 AND u.role = 'admin' FROM users u WHERE u.id = $4
         RETURNING {COLUMNS}"
    )))
    .bind(title)
    .bind(content)
    .bind(pinned)
    .bind(author)
    .fetch_optional(db)
    .await
}

/// `Some(author)` of an existing post (the author may be gone: `Some(None)`).
pub async fn author_of(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<Option<Uuid>>> {
    sqlx::query_scalar("SELECT author_id FROM news WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await
}

pub async fn update(
    db: impl PgExecutor<'_>,
    id: Uuid,
    title: &str,
    content: &str,
    pinned: Option<bool>,
) -> sqlx::Result<Option<News>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE news SET title = $2, content = $3, is_pinned = coalesce($4, is_pinned)
         WHERE id = $1 RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(title)
    .bind(content)
    .bind(pinned)
    .fetch_optional(db)
    .await
}

pub async fn delete(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM news WHERE id = $1")
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}
