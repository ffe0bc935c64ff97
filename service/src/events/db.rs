//! SQL of the public event pages.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::AssertSqlSafe;
use sqlx::PgExecutor;
use uuid::Uuid;

#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct EventListRow {
    pub id: Uuid,
    pub title: String,
    pub description: Option<String>,
    pub venue: String,
    pub address: Option<String>,
    #[serde(with = "tiketi_core::time::wire")]
    pub event_date: DateTime<Utc>,
    #[serde(with = "tiketi_core::time::wire")]
    pub sale_start_date: DateTime<Utc>,
    #[serde(with = "tiketi_core::time::wire")]
    pub sale_end_date: DateTime<Utc>,
    pub poster_image_url: Option<String>,
    pub status: String,
    pub artist_name: Option<String>,
    /// A string, as the original sent its bigint count.
    pub ticket_type_count: String,
    pub min_price: Option<i32>,
    pub max_price: Option<i32>,
}

/// Every column of `events` the API shows (`GET /api/events/:id`, admin answers).
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct EventRow {
    pub id: Uuid,
    pub title: String,
    pub description: Option<String>,
    pub venue: String,
    pub address: Option<String>,
    #[serde(with = "tiketi_core::time::wire")]
    pub event_date: DateTime<Utc>,
    #[serde(with = "tiketi_core::time::wire")]
    pub sale_start_date: DateTime<Utc>,
    #[serde(with = "tiketi_core::time::wire")]
    pub sale_end_date: DateTime<Utc>,
    pub poster_image_url: Option<String>,
    pub status: String,
    pub seat_layout_id: Option<Uuid>,
    pub artist_name: Option<String>,
    pub pre_scaled: bool,
    pub created_by: Option<Uuid>,
    #[serde(with = "tiketi_core::time::wire")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "tiketi_core::time::wire")]
    pub updated_at: DateTime<Utc>,
}

pub const EVENT_COLUMNS: &str = "id, title, description, venue, address, event_date, sale_start_date, sale_end_date, \
     poster_image_url, status, seat_layout_id, artist_name, pre_scaled, created_by, created_at, updated_at";

#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct TicketTypeRow {
    pub id: Uuid,
    pub name: String,
    pub price: i32,
    pub total_quantity: i32,
    pub available_quantity: i32,
    pub description: Option<String>,
}

const SEARCH_TEXT: &str = "(coalesce(e.title, '') || ' ' || coalesce(e.artist_name, '') || ' ' || coalesce(e.venue, '') || ' ' || coalesce(e.address, ''))";

/// Escapes LIKE wildcards so user text matches literally.
fn like_pattern(term: &str) -> String {
    let escaped = term
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// The search terms for `q`: itself plus its Korean/English keyword translations.
pub async fn search_patterns(db: impl PgExecutor<'_>, q: &str) -> sqlx::Result<Vec<String>> {
    let p = like_pattern(q);
    let mut terms: Vec<String> = sqlx::query_scalar(
        "SELECT english FROM keyword_mappings WHERE korean ILIKE $1
         UNION SELECT korean FROM keyword_mappings WHERE english ILIKE $1",
    )
    .bind(&p)
    .fetch_all(db)
    .await?;
    terms.push(q.to_string());
    Ok(terms.iter().map(|t| like_pattern(t)).collect())
}

pub struct ListFilter<'a> {
    pub status: Option<&'a str>,
    pub patterns: Option<&'a [String]>,
    pub limit: i64,
    pub offset: i64,
}

pub async fn list(db: impl PgExecutor<'_>, f: &ListFilter<'_>) -> sqlx::Result<Vec<EventListRow>> {
    let sql = format!(
        "SELECT e.id, e.title, e.description, e.venue, e.address, e.event_date, e.sale_start_date, e.sale_end_date,
                e.poster_image_url, e.status, e.artist_name,
                t.n::TEXT AS ticket_type_count, t.min_price, t.max_price
         FROM events e
         CROSS JOIN LATERAL (SELECT count(*) AS n, min(price) AS min_price, max(price) AS max_price
                             FROM ticket_types WHERE event_id = e.id) t
         WHERE ($1::TEXT IS NULL OR e.status = $1)
           AND ($2::TEXT[] IS NULL OR {SEARCH_TEXT} ILIKE ANY ($2))
         ORDER BY e.sale_start_date ASC, e.id
         LIMIT $3 OFFSET $4"
    );
    sqlx::query_as(AssertSqlSafe(sql))
        .bind(f.status)
        .bind(f.patterns)
        .bind(f.limit)
        .bind(f.offset)
        .fetch_all(db)
        .await
}

pub async fn count(db: impl PgExecutor<'_>, f: &ListFilter<'_>) -> sqlx::Result<i64> {
    let sql = format!(
        "SELECT count(*) FROM events e
         WHERE ($1::TEXT IS NULL OR e.status = $1) AND ($2::TEXT[] IS NULL OR {SEARCH_TEXT} ILIKE ANY ($2))"
    );
    sqlx::query_scalar(AssertSqlSafe(sql))
        .bind(f.status)
        .bind(f.patterns)
        .fetch_one(db)
        .await
}

pub async fn find(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<EventRow>> {
    sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(db)
    .await
}

pub async fn ticket_types(
    db: impl PgExecutor<'_>,
    event_id: Uuid,
) -> sqlx::Result<Vec<TicketTypeRow>> {
    sqlx::query_as(
        "SELECT id, name, price, total_quantity, available_quantity, description
         FROM ticket_types WHERE event_id = $1 ORDER BY price DESC, name",
    )
    .bind(event_id)
    .fetch_all(db)
    .await
}

pub async fn availability(
    db: impl PgExecutor<'_>,
    ticket_type_id: Uuid,
) -> sqlx::Result<Option<(i32, i32)>> {
    sqlx::query_as("SELECT available_quantity, total_quantity FROM ticket_types WHERE id = $1")
        .bind(ticket_type_id)
        .fetch_optional(db)
        .await
}
