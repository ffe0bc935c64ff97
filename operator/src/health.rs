//! `/healthz`: unhealthy when the controller's stream ended (it no longer reconciles anything) or
//! the leader loop is stuck (its last round is older than `stuck_after`, e.g. a Lease call that
//! hangs). A standby that does not lead but keeps trying is healthy; so is a leader.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::time::Instant;

#[derive(Debug)]
pub struct Health {
    controller_ended: AtomicBool,
    /// The leader loop's last round (None: no leader election).
    beat: Mutex<Option<Instant>>,
    stuck_after: Duration,
}

impl Health {
    /// `stuck_after`: how long the leader loop may go without a round (several retries plus a
    /// renew deadline: a round that hangs is ended by the deadline).
    pub fn new(stuck_after: Duration) -> Self {
        Health {
            controller_ended: AtomicBool::new(false),
            beat: Mutex::new(None),
            stuck_after,
        }
    }

    /// The leader loop made a round.
    pub fn beat(&self) {
        *self.beat.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    pub fn controller_ended(&self) {
        self.controller_ended.store(true, Ordering::Relaxed);
    }

    /// Ok, or why not.
    pub fn check(&self) -> Result<(), &'static str> {
        if self.controller_ended.load(Ordering::Relaxed) {
            return Err("the controller stopped");
        }
        let beat = *self.beat.lock().unwrap_or_else(|p| p.into_inner());
        match beat {
            Some(at) if at.elapsed() > self.stuck_after => Err("the leader loop is stuck"),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn health_fails_when_the_leader_loop_stops_beating_or_the_controller_ends() {
        let h = Health::new(Duration::from_secs(30));
        assert_eq!(h.check(), Ok(()), "no leader election: nothing to watch");
        h.beat();
        tokio::time::advance(Duration::from_secs(29)).await;
        assert_eq!(h.check(), Ok(()), "a standby still trying");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(h.check(), Err("the leader loop is stuck"));
        h.beat();
        assert_eq!(h.check(), Ok(()));
        h.controller_ended();
        assert_eq!(h.check(), Err("the controller stopped"));
    }
}
