//! SQL of the accounts feature.

use sqlx::PgExecutor;
use uuid::Uuid;

#[derive(sqlx::FromRow)]
pub struct UserRow {
    pub id: Uuid,
    pub email: String,
    pub password_hash: String,
    pub name: String,
    pub role: String,
}

/// The user's current role; `None` when the user no longer exists.
pub async fn role_of(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("SELECT role FROM users WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await
}

pub async fn find_by_email(db: impl PgExecutor<'_>, email: &str) -> sqlx::Result<Option<UserRow>> {
    sqlx::query_as("SELECT id, email, password_hash, name, role FROM users WHERE email = $1")
        .bind(email)
        .fetch_optional(db)
        .await
}

pub struct NewUser<'a> {
    pub email: &'a str,
    pub password_hash: &'a str,
    pub name: &'a str,
    pub phone: Option<&'a str>,
    pub role: &'a str,
}

/// Inserts a user; `None` when the email is taken (also under a concurrent registration).
pub async fn insert(db: impl PgExecutor<'_>, u: &NewUser<'_>) -> sqlx::Result<Option<UserRow>> {
    sqlx::query_as(
        "INSERT INTO users (email, password_hash, name, phone, role) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (email) DO NOTHING
         RETURNING id, email, password_hash, name, role",
    )
    .bind(u.email)
    .bind(u.password_hash)
    .bind(u.name)
    .bind(u.phone)
    .bind(u.role)
    .fetch_optional(db)
    .await
}

pub async fn set_password_hash(db: impl PgExecutor<'_>, id: Uuid, hash: &str) -> sqlx::Result<()> {
    sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
        .bind(id)
        .bind(hash)
        .execute(db)
        .await?;
    Ok(())
}
