//! Accounts: registration, login, tokens, passwords and the start-up admin account.

pub mod db;
pub mod http;
pub mod jwt;
pub mod password;
pub mod throttle;

use sqlx::PgPool;

/// Creates the configured admin account when it does not exist yet.
pub async fn ensure_admin(db: &PgPool, email: &str, password: &str) -> anyhow::Result<()> {
    let Some(email) = tiketi_core::email::account(email) else {
        anyhow::bail!(
            "ADMIN_EMAIL {email:?} is not an e-mail address of at most {} characters",
            tiketi_core::email::MAX_CHARS
        );
    };
    if db::find_by_email(db, &email).await?.is_some() {
        return Ok(());
    }
    let hash = password::hash(password.to_string()).await?;
    let user = db::NewUser {
        email: &email,
        password_hash: &hash,
        name: "관리자",
        phone: Some("010-1234-5678"),
        role: "admin",
    };
    if db::insert(db, &user).await?.is_some() {
        tracing::info!(%email, "admin account created");
    }
    Ok(())
}
