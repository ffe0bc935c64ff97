//! Benchmark data, written straight into PostgreSQL: registering 100k users through the API would
//! benchmark argon2, not the paths we measure. Tokens are minted with the service's secret.

use anyhow::Result;
use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

pub const DATABASE: &str = "tiketi_bench";

/// Recreates the benchmark database next to `admin_url`'s and returns its URL.
pub async fn fresh_database(admin_url: &str) -> Result<String> {
    tiketi_testkit::create_database(admin_url, DATABASE, true).await
}

/// `n` users named after `tag` (they never log in); returns their ids in order.
pub async fn users(db: &PgPool, tag: &str, n: usize) -> Result<Vec<Uuid>> {
    let users = tiketi_testkit::insert_users(db, tag, "not-a-login", n).await?;
    Ok(users.into_iter().map(|(id, _)| id).collect())
}

/// An event on sale now with `seats` available seats; returns the event and its seat ids.
pub async fn seat_event(
    db: &PgPool,
    title: &str,
    seats: usize,
    queue_threshold: i32,
) -> Result<(Uuid, Vec<Uuid>)> {
    let (event,): (Uuid,) = sqlx::query_as(
        "INSERT INTO events (title, venue, event_date, sale_start_date, sale_end_date, status,
                             seat_layout_id, artist_name, queue_threshold)
         VALUES ($1, 'Bench Arena', now() + interval '30 days', now() - interval '1 hour',
                 now() + interval '29 days', 'on_sale',
                 (SELECT id FROM seat_layouts ORDER BY total_seats DESC LIMIT 1), 'Bench', $2)
         RETURNING id",
    )
    .bind(title)
    .bind(queue_threshold)
    .fetch_one(db)
    .await?;
    let seat_ids: Vec<(Uuid,)> = sqlx::query_as(
        "INSERT INTO seats (event_id, section, row_number, seat_number, seat_label, price)
         SELECT $1, 'B', g / 100 + 1, g % 100 + 1, 'B-' || (g / 100 + 1) || '-' || (g % 100 + 1), 50000
         FROM generate_series(0, $2::int - 1) g
         ORDER BY g
         RETURNING id",
    )
    .bind(event)
    .bind(i32::try_from(seats)?)
    .fetch_all(db)
    .await?;
    Ok((event, seat_ids.into_iter().map(|(id,)| id).collect()))
}

/// A catalogue like a real front page: `n` events on sale, each with four ticket types.
pub async fn catalogue(db: &PgPool, n: usize) -> Result<Vec<Uuid>> {
    let ids: Vec<(Uuid,)> = sqlx::query_as(
        "INSERT INTO events (title, description, venue, address, event_date, sale_start_date,
                             sale_end_date, status, artist_name, poster_image_url)
         SELECT '2026 Bench Tour ' || g, 'A benchmark concert with a realistic description.',
                'Olympic Hall', 'Seoul', now() + (g || ' days')::interval, now() - interval '1 day',
                now() + interval '60 days', 'on_sale', 'Artist ' || g, '/images/concert1.jpg'
         FROM generate_series(1, $1::int) g
         RETURNING id",
    )
    .bind(i32::try_from(n)?)
    .fetch_all(db)
    .await?;
    sqlx::query(
        "INSERT INTO ticket_types (event_id, name, price, total_quantity, available_quantity, description)
         SELECT e.id, t.name, t.price, 500, 500, t.name || ' seats'
         FROM events e
         CROSS JOIN (VALUES ('VIP', 150000), ('R', 120000), ('S', 90000), ('A', 50000)) AS t(name, price)
         WHERE e.id = ANY($1)",
    )
    .bind(ids.iter().map(|(id,)| *id).collect::<Vec<_>>())
    .execute(db)
    .await?;
    Ok(ids.into_iter().map(|(id,)| id).collect())
}

/// HS256 tokens with the service's claims, valid for an hour.
pub fn tokens(secret: &str, users: &[Uuid]) -> Result<Vec<String>> {
    let key = EncodingKey::from_secret(secret.as_bytes());
    let iat = chrono::Utc::now().timestamp();
    users
        .iter()
        .map(|id| {
            let claims = json!({
                "userId": id, "email": format!("{id}@bench.invalid"), "role": "user",
                "iat": iat, "exp": iat + 3600,
            });
            Ok(encode(&Header::default(), &claims, &key)?)
        })
        .collect()
}
