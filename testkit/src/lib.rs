//! Fixtures shared by the API tests, the chaos suite and the benchmarks, written straight into
//! PostgreSQL: creating 100k users through the API would measure argon2, and every suite needs the
//! same databases, users and seat events. Migrations and tokens stay with each caller (the API
//! tests migrate in-process, the chaos suite through the real binary, the bench mints its own).
//! `sio` is the raw Socket.IO client of the load generator and the real-pod tests.

pub mod sio;

use anyhow::{Context, Result};
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

/// Creates the database `name` on the server of `admin_url` (dropping it first when `replace`) and
/// returns its URL. Names are the caller's (`tiketi_test_*` ones are dropped by `make test`).
pub async fn create_database(admin_url: &str, name: &str, replace: bool) -> Result<String> {
    let mut conn = PgConnection::connect(admin_url)
        .await
        .context("connect to PostgreSQL (DATABASE_URL)")?;
    if replace {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await?;
    }
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await?;
    conn.close().await.ok();
    let (base, _) = admin_url
        .rsplit_once('/')
        .context("DATABASE_URL has no database name")?;
    Ok(format!("{base}/{name}"))
}

/// A unique database name for one test run (`make test` drops `tiketi_test_*`).
pub fn test_database_name(kind: &str) -> String {
    format!("tiketi_test_{kind}{}", Uuid::new_v4().simple())
}

/// `n` users called `name` with unique emails and the given password hash; returns (id, email) in
/// order.
pub async fn insert_users(
    db: &PgPool,
    name: &str,
    password_hash: &str,
    n: usize,
) -> Result<Vec<(Uuid, String)>> {
    let run = Uuid::new_v4().simple().to_string();
    let emails: Vec<String> = (0..n).map(|i| format!("u{run}{i}@example.com")).collect();
    let rows = sqlx::query_as(
        "INSERT INTO users (email, password_hash, name)
         SELECT e, $2, $3 FROM unnest($1::TEXT[]) WITH ORDINALITY AS t(e, n) ORDER BY n
         RETURNING id, email",
    )
    .bind(&emails)
    .bind(password_hash)
    .bind(name)
    .fetch_all(db)
    .await?;
    Ok(rows)
}

/// An event on sale now (opened an hour ago, closing in `days_left` days) on the seat layout named
/// `layout` with waiting-room `threshold`; returns its id. Seats are the caller's.
pub async fn insert_sale(
    db: &PgPool,
    title: &str,
    layout: Option<&str>,
    threshold: i32,
    days_left: i32,
) -> Result<Uuid> {
    Ok(sqlx::query_scalar(
        "INSERT INTO events (title, venue, event_date, sale_start_date, sale_end_date, status,
                             seat_layout_id, artist_name, queue_threshold)
         VALUES ($1, '테스트홀', now() + interval '30 days', now() - interval '1 hour',
                 now() + make_interval(days => $4), 'on_sale',
                 (SELECT id FROM seat_layouts WHERE name = $2), 'TEST', $3)
         RETURNING id",
    )
    .bind(title)
    .bind(layout)
    .bind(threshold)
    .bind(days_left)
    .fetch_one(db)
    .await?)
}

/// The seats of an event in map order.
pub async fn seats_of(db: &PgPool, event: Uuid) -> Result<Vec<Uuid>> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM seats WHERE event_id = $1 ORDER BY section, row_number, seat_number",
    )
    .bind(event)
    .fetch_all(db)
    .await?)
}

/// The status of one seat.
pub async fn seat_status(db: &PgPool, seat: Uuid) -> Result<String> {
    Ok(sqlx::query_scalar("SELECT status FROM seats WHERE id = $1")
        .bind(seat)
        .fetch_one(db)
        .await?)
}
