//! Fixed-window rate limits shared by all replicas through Redis.

use fred::{
    prelude::{KeysInterface, TransactionInterface},
    types::ExpireOptions,
};

use crate::{error::Error, metrics::KindLabels, state::AppState};

const WINDOW_SECS: u64 = 60;

/// One counted attempt, which can be given back when the service refused it for its own capacity
/// (503 `SERVER_BUSY` before any work): a person who clicks again after "busy" must not then be told
/// they tried too often. `None` when nothing was counted (no limit, or Redis unreachable).
pub struct Attempt(Option<String>);

impl Attempt {
    /// Uncounts the attempt in the window it was counted in (best effort: a Redis error leaves it).
    /// Should the window's key have expired meanwhile, DECR recreates it without a TTL: `EXPIRE NX`
    /// gives that one a TTL again and leaves a live key's alone.
    pub async fn refund(self, state: &AppState) {
        let Some(key) = self.0 else { return };
        let tx = state.redis.next().multi();
        let undone: Result<(i64, i64), _> = state
            .redis_breaker
            .run(async {
                let _: () = tx.decr(&key).await?;
                let _: () = tx
                    .expire(&key, WINDOW_SECS as i64 + 1, Some(ExpireOptions::NX))
                    .await?;
                tx.exec(true).await
            })
            .await;
        if let Err(Some(e)) = undone {
            tracing::debug!(error = %e, "rate limit attempt not refunded");
        }
    }
}

/// Counts one attempt of `action` by `subject`; refuses with 429 beyond `limit` per minute
/// (0 = no limit). When Redis is unreachable the attempt is allowed (logged): an outage must not
/// lock everyone out.
pub async fn check(
    state: &AppState,
    action: &'static str,
    subject: &str,
    limit: u32,
) -> Result<Attempt, Error> {
    if limit == 0 {
        return Ok(Attempt(None));
    }
    let window = chrono::Utc::now().timestamp() as u64 / WINDOW_SECS;
    let key = state.keys.rate_limit(action, subject, window);
    let tx = state.redis.next().multi();
    let counted: Result<(i64, i64), _> = state
        .redis_breaker
        .run(async {
            let _: () = tx.incr(&key).await?;
            let _: () = tx.expire(&key, WINDOW_SECS as i64 + 1, None).await?;
            tx.exec(true).await
        })
        .await;
    match counted {
        Ok((n, _)) if n > i64::from(limit) => {
            state
                .metrics
                .rate_limited
                .get_or_create(&KindLabels { kind: action })
                .inc();
            let retry_after_secs =
                (WINDOW_SECS - chrono::Utc::now().timestamp() as u64 % WINDOW_SECS) as u32;
            Err(Error::TooManyRequests { retry_after_secs })
        }
        Ok(_) => Ok(Attempt(Some(key))),
        Err(e) => {
            if let Some(e) = e {
                tracing::warn!(error = %e, action, "rate limit not checked: redis unavailable");
            }
            Ok(Attempt(None))
        }
    }
}
