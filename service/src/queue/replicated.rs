//! A place or an admission told to a user must survive a failover of the Redis primary that holds
//! it. Redis replicates asynchronously, so with `REDIS_WAIT_REPLICAS` > 0 the connection that ran
//! the waiting room's script then sends `WAIT n timeout` to the same primary, and the answer goes out
//! only once `n` replicas have every write the connection made. Fewer within `REDIS_WAIT_MS`: the
//! request fails as a Redis outage does (503 + `Retry-After`); the write stays on the primary, and
//! the retry finds the same place and waits again. Fairness fails closed: a primary without a replica
//! (one just promoted, until its old primary rejoins as a replica) tells nobody a place.

use fred::{
    clients::Client,
    error::{Error, ErrorKind},
    interfaces::ClientLike,
    prelude::ServerInterface,
    types::{ClusterHash, config::Options},
};

use crate::config::Config;

/// Waits until the writes `client` made to the primary serving `key` are on the configured number
/// of replicas (nothing to wait for when `REDIS_WAIT_REPLICAS` is 0).
pub async fn on_replicas(client: &Client, key: &str, config: &Config) -> Result<(), Error> {
    let wanted = config.redis_wait_replicas;
    if wanted == 0 {
        return Ok(());
    }
    // the primary serving the key's slot (a single Redis ignores the hint), on the connection that
    // ran the script or not at all: `WAIT` counts the writes of its own connection, so one resent
    // after a reconnect (to the promoted replica, say) would count none of them and report a place
    // that died with the old primary as replicated. No retry, and no queueing while disconnected
    // (a reconnect takes at least the 100 ms of the first backoff, the script's reply to this send
    // microseconds).
    let options = Options {
        cluster_hash: Some(ClusterHash::Custom(tiketi_core::keys::slot(key))),
        max_attempts: Some(1),
        fail_fast: true,
        ..Default::default()
    };
    let timeout_ms = i64::try_from(config.redis_wait_ms).unwrap_or(i64::MAX);
    let acked: i64 = client
        .with_options(&options)
        .wait(i64::from(wanted), timeout_ms)
        .await?;
    if acked < i64::from(wanted) {
        return Err(Error::new(
            ErrorKind::Timeout,
            format!(
                "{acked} of {wanted} Redis replicas acknowledged the waiting room's write within {timeout_ms} ms"
            ),
        ));
    }
    Ok(())
}
