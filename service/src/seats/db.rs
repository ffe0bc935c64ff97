//! SQL of seats.

use sqlx::PgConnection;
use tiketi_core::rules::{LayoutConfig, layout_seats};
use uuid::Uuid;

/// Creates every seat of the layout for the event; returns how many.
pub async fn insert_layout_seats(
    tx: &mut PgConnection,
    event_id: Uuid,
    layout_id: Uuid,
) -> sqlx::Result<Option<u64>> {
    let config: Option<sqlx::types::Json<LayoutConfig>> =
        sqlx::query_scalar("SELECT layout_config FROM seat_layouts WHERE id = $1")
            .bind(layout_id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(config) = config else {
        return Ok(None);
    };
    let seats = layout_seats(&config.0);
    let (mut sections, mut rows, mut numbers, mut labels, mut prices) =
        (vec![], vec![], vec![], vec![], vec![]);
    for s in seats {
        sections.push(s.section);
        rows.push(s.row_number);
        numbers.push(s.seat_number);
        labels.push(s.seat_label);
        prices.push(s.price);
    }
    let done = sqlx::query(
        "INSERT INTO seats (event_id, section, row_number, seat_number, seat_label, price)
         SELECT $1, * FROM unnest($2::TEXT[], $3::INT[], $4::INT[], $5::TEXT[], $6::INT[])",
    )
    .bind(event_id)
    .bind(&sections)
    .bind(&rows)
    .bind(&numbers)
    .bind(&labels)
    .bind(&prices)
    .execute(&mut *tx)
    .await?;
    Ok(Some(done.rows_affected()))
}
