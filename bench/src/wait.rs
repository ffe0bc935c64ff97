//! Waiting on the servers instead of sleeping a guessed time.

use std::time::{Duration, Instant};

use crate::servers::cpu_seconds;

/// Returns once the processes together use under 5 % of one CPU over a 500 ms window (all their
/// queued work is done), or after `max`.
pub async fn idle(pids: &[u32], max: Duration) {
    let started = Instant::now();
    let total = || {
        pids.iter()
            .filter_map(|p| cpu_seconds(*p).ok())
            .sum::<f64>()
    };
    let mut last = total();
    while started.elapsed() < max {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = total();
        if now - last < 0.025 {
            return;
        }
        last = now;
    }
    println!(
        "   (still busy after {} s; measuring anyway)",
        max.as_secs()
    );
}
