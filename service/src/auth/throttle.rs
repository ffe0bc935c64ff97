//! Per-account login throttling that slows a password guesser without locking the owner out.
//!
//! A fixed per-account limit lets anyone lock any account: a few wrong passwords a minute and the
//! owner is refused too. Here failures are counted per (account, client address) and per account:
//!
//! - an address that used up its budget of failures on the account (`LOGIN_FAILURES_PER_ADDRESS`
//!   per `LOGIN_FAILURE_WINDOW_SECONDS`) gets 429 for that account until the window ends, even with
//!   the right password — so it cannot keep guessing;
//! - an address with failures on the account waits before each further attempt, doubling from
//!   250 ms with its own failures after the first and with the account's failures beyond
//!   `LOGIN_SLOWDOWN_AFTER_ACCOUNT_FAILURES` (attackers spread over many addresses), up to
//!   `LOGIN_SLOWDOWN_MAX_MS`;
//! - an address with no failures on the account is never refused or slowed by them: the owner
//!   logging in from their own network gets in at once whatever an attacker did elsewhere.
//!
//! An attempt counts as a failure from the moment it starts and is taken back when the password was
//! right, so a burst of parallel guesses cannot all pass the check before any failure is recorded.
//! A success clears its address's failures on the account. The per-address limit on all logins
//! (`LOGIN_RATE_LIMIT_PER_MINUTE`) still applies on top. When Redis is unreachable the attempt is
//! let through unthrottled (logged), like the other rate limits: an outage must not lock everyone
//! out.

use std::time::Duration;

use fred::{
    prelude::{KeysInterface, TransactionInterface},
    types::ExpireOptions,
};

use crate::{config::Config, error::Error, metrics::KindLabels, state::AppState};

/// The wait of the first slowed attempt; each further level doubles it.
const FIRST_WAIT: Duration = Duration::from_millis(250);

/// The throttle's settings.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// Failures one address may make on one account per window; 0 turns the throttle off.
    pub failures_per_address: u32,
    pub window: Duration,
    /// Account failures (every address) before they add to the wait.
    pub slowdown_after: u32,
    pub max_wait: Duration,
}

impl Policy {
    pub fn from_config(c: &Config) -> Self {
        Self {
            failures_per_address: c.login_failures_per_address,
            window: Duration::from_secs(c.login_failure_window_seconds),
            slowdown_after: c.login_slowdown_after_account_failures,
            max_wait: Duration::from_millis(c.login_slowdown_max_ms),
        }
    }
}

/// What the counters say before this attempt (in-flight attempts count as failures).
#[derive(Clone, Copy, Debug)]
pub struct Seen {
    /// Failures of this client address on this account in the window.
    pub address_failures: u32,
    /// Failures of this account from every address in the window.
    pub account_failures: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Check the password after waiting this long.
    Attempt { wait: Duration },
    /// This address used up its failures on this account: 429, no password check.
    Refuse,
}

/// The throttle's decision for one attempt.
pub fn decide(p: &Policy, seen: Seen) -> Verdict {
    if p.failures_per_address == 0 || seen.address_failures == 0 {
        return Verdict::Attempt {
            wait: Duration::ZERO,
        };
    }
    if seen.address_failures >= p.failures_per_address {
        return Verdict::Refuse;
    }
    // one typo is free; every further failure of this address, and every account failure beyond the
    // threshold, doubles the wait
    let level = (seen.address_failures - 1)
        .saturating_add(seen.account_failures.saturating_sub(p.slowdown_after));
    if level == 0 {
        return Verdict::Attempt {
            wait: Duration::ZERO,
        };
    }
    let wait = FIRST_WAIT.saturating_mul(1u32 << (level - 1).min(16));
    Verdict::Attempt {
        wait: wait.min(p.max_wait),
    }
}

/// One login attempt counted as a failure until [`Attempt::succeeded`] or [`Attempt::refund`]
/// says otherwise (dropping it leaves the failure counted). Holds no keys when the throttle is off
/// or Redis was unreachable.
pub struct Attempt(Option<(String, String)>);

/// Counts the attempt of `address` (`client_ip::limit_key`) on `account` (normalised e-mail) and
/// waits as the throttle decides; 429 when this address may not try this account now.
pub async fn begin(state: &AppState, account: &str, address: &str) -> Result<Attempt, Error> {
    let policy = Policy::from_config(&state.config);
    if policy.failures_per_address == 0 {
        return Ok(Attempt(None));
    }
    let window = policy.window.as_secs() as i64;
    // one slot: the transactions below touch both
    let [by_address, by_account] = state.keys.login_throttle(account, address);
    let tx = state.redis.next().multi();
    let counted: Result<(i64, i64, Option<i64>, i64), _> = state
        .redis_breaker
        .run(async {
            let _: () = tx.incr(&by_address).await?;
            let _: () = tx
                .expire(&by_address, window, Some(ExpireOptions::NX))
                .await?;
            let _: () = tx.get(&by_account).await?;
            let _: () = tx.ttl(&by_address).await?;
            tx.exec(true).await
        })
        .await;
    let (n, _, account_failures, ttl) = match counted {
        Ok(c) => c,
        Err(e) => {
            if let Some(e) = e {
                tracing::warn!(error = %e, "login throttle not checked: redis unavailable");
            }
            return Ok(Attempt(None));
        }
    };
    let seen = Seen {
        address_failures: u32::try_from(n - 1).unwrap_or(0),
        account_failures: account_failures
            .and_then(|a| u32::try_from(a).ok())
            .unwrap_or(0),
    };
    match decide(&policy, seen) {
        Verdict::Refuse => {
            state
                .metrics
                .rate_limited
                .get_or_create(&KindLabels {
                    kind: "login-account",
                })
                .inc();
            let retry_after_secs = u32::try_from(ttl.clamp(1, window)).unwrap_or(1);
            Err(Error::TooManyRequests { retry_after_secs })
        }
        Verdict::Attempt { wait } => {
            let tx = state.redis.next().multi();
            let added: Result<(i64, i64), _> = state
                .redis_breaker
                .run(async {
                    let _: () = tx.incr(&by_account).await?;
                    let _: () = tx
                        .expire(&by_account, window, Some(ExpireOptions::NX))
                        .await?;
                    tx.exec(true).await
                })
                .await;
            if let Err(Some(e)) = added {
                tracing::debug!(error = %e, "login account failure not counted");
            }
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            Ok(Attempt(Some((by_address, by_account))))
        }
    }
}

impl Attempt {
    /// The password was right: this address's failures on the account are cleared and the attempt
    /// is taken out of the account's count.
    pub async fn succeeded(self, state: &AppState) {
        let Some((by_address, by_account)) = self.0 else {
            return;
        };
        let window = state.config.login_failure_window_seconds as i64;
        let tx = state.redis.next().multi();
        let done: Result<(i64, i64, i64), _> = state
            .redis_breaker
            .run(async {
                let _: () = tx.del(&by_address).await?;
                let _: () = tx.decr(&by_account).await?;
                // DECR of an expired key recreates it without a TTL
                let _: () = tx
                    .expire(&by_account, window, Some(ExpireOptions::NX))
                    .await?;
                tx.exec(true).await
            })
            .await;
        if let Err(Some(e)) = done {
            tracing::debug!(error = %e, "login failures not cleared");
        }
    }

    /// No password was checked (no hashing slot, the database failed): the attempt is taken back
    /// entirely, so an outage does not use up the owner's budget.
    pub async fn refund(self, state: &AppState) {
        let Some((by_address, by_account)) = self.0 else {
            return;
        };
        let window = state.config.login_failure_window_seconds as i64;
        let tx = state.redis.next().multi();
        let done: Result<(i64, i64, i64, i64), _> = state
            .redis_breaker
            .run(async {
                let _: () = tx.decr(&by_address).await?;
                let _: () = tx
                    .expire(&by_address, window, Some(ExpireOptions::NX))
                    .await?;
                let _: () = tx.decr(&by_account).await?;
                let _: () = tx
                    .expire(&by_account, window, Some(ExpireOptions::NX))
                    .await?;
                tx.exec(true).await
            })
            .await;
        if let Err(Some(e)) = done {
            tracing::debug!(error = %e, "login attempt not refunded");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            failures_per_address: 10,
            window: Duration::from_secs(900),
            slowdown_after: 20,
            max_wait: Duration::from_secs(5),
        }
    }

    fn seen(address_failures: u32, account_failures: u32) -> Seen {
        Seen {
            address_failures,
            account_failures,
        }
    }

    fn wait(v: Verdict) -> Duration {
        match v {
            Verdict::Attempt { wait } => wait,
            Verdict::Refuse => panic!("refused"),
        }
    }

    #[test]
    fn throttle_an_address_without_failures_is_never_refused_or_slowed() {
        let p = policy();
        for account in [0, 1, 19, 20, 21, 500, u32::MAX] {
            assert_eq!(
                decide(&p, seen(0, account)),
                Verdict::Attempt {
                    wait: Duration::ZERO
                },
                "account failures {account}"
            );
        }
    }

    #[test]
    fn throttle_an_address_is_slowed_then_refused_on_its_own_failures() {
        let p = policy();
        assert_eq!(
            wait(decide(&p, seen(1, 1))),
            Duration::ZERO,
            "one typo is free"
        );
        assert_eq!(wait(decide(&p, seen(2, 2))), Duration::from_millis(250));
        assert_eq!(wait(decide(&p, seen(3, 3))), Duration::from_millis(500));
        assert_eq!(wait(decide(&p, seen(5, 5))), Duration::from_secs(2));
        assert_eq!(
            wait(decide(&p, seen(9, 9))),
            Duration::from_secs(5),
            "capped"
        );
        assert_eq!(decide(&p, seen(10, 10)), Verdict::Refuse);
        assert_eq!(decide(&p, seen(1000, 1000)), Verdict::Refuse);
    }

    #[test]
    fn throttle_an_attack_on_the_account_slows_every_address_that_failed_on_it() {
        let p = policy();
        // one failure of its own: free while the account is quiet, slowed while it is attacked
        assert_eq!(wait(decide(&p, seen(1, 20))), Duration::ZERO);
        assert_eq!(wait(decide(&p, seen(1, 21))), Duration::from_millis(250));
        assert_eq!(wait(decide(&p, seen(1, 23))), Duration::from_secs(1));
        assert_eq!(wait(decide(&p, seen(1, u32::MAX))), Duration::from_secs(5));
        assert_eq!(wait(decide(&p, seen(9, u32::MAX))), Duration::from_secs(5));
    }

    #[test]
    fn throttle_off_lets_everything_through_at_once() {
        let p = Policy {
            failures_per_address: 0,
            ..policy()
        };
        assert_eq!(wait(decide(&p, seen(1000, 1000))), Duration::ZERO);
    }
}
