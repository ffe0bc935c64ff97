//! SQL of the health checks.

use sqlx::PgExecutor;

/// One round trip to PostgreSQL.
pub async fn ping(db: impl PgExecutor<'_>) -> sqlx::Result<()> {
    sqlx::query("SELECT 1").execute(db).await?;
    Ok(())
}
