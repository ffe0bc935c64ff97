//! Redis `maxmemory-policy` check. The waiting room, admissions, holds' fast path and presence live
//! in Redis; under any policy but `noeviction` Redis deletes keys when it reaches `maxmemory`
//! (`allkeys-*` any key, `volatile-*` keys with a TTL, which admissions and presence have), and
//! queued users silently lose their places. With `noeviction` writes fail loudly instead (503).
//!
//! Checked at start (refuse or warn) and again after every reconnect and once a minute (warn: a
//! running replica never exits over it mid-sale). Managed Redis often forbids `CONFIG`: an
//! unreadable policy is warned about, never a reason not to start.

use std::time::Duration;

use fred::{
    clients::Pool,
    prelude::{ClientLike, EventInterface},
    types::CustomCommand,
};

use crate::{config::CheckMode, state::AppState};

/// What a policy means for our keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Safe,
    Evicts(String),
    /// CONFIG GET failed (forbidden on managed Redis, or Redis unreachable).
    Unknown(String),
}

pub fn assess(policy: Result<&str, &str>) -> Verdict {
    match policy {
        Ok("noeviction") => Verdict::Safe,
        Ok(p) => Verdict::Evicts(p.to_string()),
        Err(e) => Verdict::Unknown(e.to_string()),
    }
}

/// What to do about a verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Proceed,
    Warn(String),
    Refuse(String),
}

/// `at_start`: only then may the check refuse; later it can only warn.
pub fn decide(mode: CheckMode, verdict: &Verdict, at_start: bool) -> Action {
    match (mode, verdict) {
        (CheckMode::Off, _) | (_, Verdict::Safe) => Action::Proceed,
        (_, Verdict::Unknown(why)) => Action::Warn(format!(
            "could not read Redis maxmemory-policy ({why}); make sure it is noeviction, or queued \
             users can lose their places when Redis is full"
        )),
        (mode, Verdict::Evicts(p)) => {
            let msg = format!(
                "Redis maxmemory-policy is {p}: when Redis reaches maxmemory it evicts keys, and \
                 waiting-room positions and admissions vanish. Set `maxmemory-policy noeviction` \
                 (redis.conf or CONFIG SET), or REDIS_EVICTION_POLICY_CHECK=warn to run anyway"
            );
            if mode == CheckMode::Refuse && at_start {
                Action::Refuse(msg)
            } else {
                Action::Warn(msg)
            }
        }
    }
}

/// Reads the policy with CONFIG GET (2 s at most). On a Redis Cluster every primary is asked (each
/// has its own configuration) and the first that would evict answers for all. (A custom command:
/// fred's `i-config` interface would be a new feature build for one call.)
pub async fn read_policy(redis: &Pool) -> Result<String, String> {
    let client = redis.next();
    let nodes = if client.is_clustered() {
        client.active_connections().into_iter().map(Some).collect()
    } else {
        vec![None]
    };
    let mut policy = String::new();
    for node in nodes {
        let at = node
            .as_ref()
            .map(|n| format!(" on {n}"))
            .unwrap_or_default();
        let got = read_one(client, node)
            .await
            .map_err(|e| format!("{e}{at}"))?;
        if policy.is_empty() || policy == "noeviction" {
            policy = got;
        }
    }
    Ok(policy)
}

async fn read_one(
    client: &fred::clients::Client,
    node: Option<fred::types::config::Server>,
) -> Result<String, String> {
    let cmd = CustomCommand::new_static("CONFIG", None, false);
    let args = vec!["GET", "maxmemory-policy"];
    let ask = async {
        match node {
            Some(n) => client.with_cluster_node(n).custom(cmd, args).await,
            None => client.custom(cmd, args).await,
        }
    };
    let got: std::collections::HashMap<String, String> =
        tokio::time::timeout(Duration::from_secs(2), ask)
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|e| e.to_string())?;
    got.get("maxmemory-policy")
        .cloned()
        .ok_or_else(|| "CONFIG GET maxmemory-policy answered nothing".to_string())
}

/// Reads, records (metric, readiness report) and judges the policy.
async fn check(
    redis: &Pool,
    mode: CheckMode,
    health: &crate::health::deps::DependencyState,
    at_start: bool,
) -> Action {
    if mode == CheckMode::Off {
        return Action::Proceed;
    }
    let policy = read_policy(redis).await;
    health.set_redis_policy(policy.as_deref().ok().map(str::to_string));
    decide(
        mode,
        &assess(policy.as_deref().map_err(|e| e.as_str())),
        at_start,
    )
}

/// The start-up check: an error refuses to start.
pub async fn check_at_start(state: &AppState) -> anyhow::Result<()> {
    match check(
        &state.redis,
        state.config.eviction_check(),
        &state.health,
        true,
    )
    .await
    {
        Action::Proceed => Ok(()),
        Action::Warn(msg) => {
            tracing::warn!("{msg}");
            Ok(())
        }
        Action::Refuse(msg) => Err(anyhow::anyhow!("{msg}")),
    }
}

const RECHECK_EVERY: Duration = Duration::from_secs(60);

/// Re-checks after every reconnect of the pool (a failover may land on a differently configured
/// Redis) and once a minute; logs only when the observed policy changes. Runs beside the server.
pub async fn watch(state: AppState) {
    let mode = state.config.eviction_check();
    if mode == CheckMode::Off {
        return std::future::pending().await;
    }
    let mut reconnects: Vec<_> = state
        .redis
        .clients()
        .iter()
        .map(|c| c.reconnect_rx())
        .collect();
    let mut tick = tokio::time::interval(RECHECK_EVERY);
    tick.tick().await;
    let mut last = state.health.redis_policy();
    loop {
        let reconnected = async {
            if reconnects.is_empty() {
                return std::future::pending().await;
            }
            let (got, i, _) =
                futures::future::select_all(reconnects.iter_mut().map(|rx| Box::pin(rx.recv())))
                    .await;
            // a closed channel (its client dropped) would answer at once, forever
            if matches!(got, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                reconnects.swap_remove(i);
            }
        };
        tokio::select! {
            () = reconnected => {}
            _ = tick.tick() => {}
        }
        let action = check(&state.redis, mode, &state.health, false).await;
        let now = state.health.redis_policy();
        if now != last {
            match action {
                Action::Warn(msg) | Action::Refuse(msg) => tracing::error!("{msg}"),
                Action::Proceed => tracing::info!(policy = ?now, "Redis maxmemory-policy is safe"),
            }
            last = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eviction_only_noeviction_is_safe() {
        assert_eq!(assess(Ok("noeviction")), Verdict::Safe);
        for p in [
            "allkeys-lru",
            "allkeys-lfu",
            "allkeys-random",
            "volatile-lru",
            "volatile-lfu",
            "volatile-random",
            "volatile-ttl",
        ] {
            assert_eq!(assess(Ok(p)), Verdict::Evicts(p.into()), "{p}");
        }
        assert!(matches!(assess(Err("NOPERM")), Verdict::Unknown(_)));
    }

    #[test]
    fn eviction_decisions_refuse_only_at_start_and_never_when_unknown() {
        let evicts = Verdict::Evicts("allkeys-lru".into());
        let unknown = Verdict::Unknown("ERR unknown command 'CONFIG'".into());
        assert!(
            matches!(decide(CheckMode::Refuse, &evicts, true), Action::Refuse(m) if m.contains("allkeys-lru"))
        );
        assert!(matches!(
            decide(CheckMode::Refuse, &evicts, false),
            Action::Warn(_)
        ));
        assert!(matches!(
            decide(CheckMode::Warn, &evicts, true),
            Action::Warn(_)
        ));
        assert_eq!(decide(CheckMode::Off, &evicts, true), Action::Proceed);
        assert!(matches!(
            decide(CheckMode::Refuse, &unknown, true),
            Action::Warn(_)
        ));
        assert_eq!(decide(CheckMode::Off, &unknown, true), Action::Proceed);
        for mode in [CheckMode::Refuse, CheckMode::Warn, CheckMode::Off] {
            assert_eq!(decide(mode, &Verdict::Safe, true), Action::Proceed);
        }
    }
}
