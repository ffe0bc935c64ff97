//! The waiting room's gate per event (`Gate`) and this replica's memory of the gates (`Gates`, part
//! of `AppState`); `limit` reads the gate in force.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use tiketi_core::rules::CapacityRecord;
use uuid::Uuid;

/// What the waiting room needs to know about an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gate {
    /// Admitted users before newcomers queue.
    pub threshold: i64,
    /// When the sale opens (ms since the epoch): nobody is admitted before.
    pub opens_ms: i64,
}

/// How long a replica keeps an event's gate in memory: during a join storm every check asks the same
/// question. An admin change on this replica clears it at once (`Gates::forget`); another replica's
/// change is seen within this time.
const GATE_TTL: Duration = Duration::from_secs(1);

/// This replica's memory of the gates.
pub struct Gates {
    /// The gate in force per event, for `GATE_TTL`.
    pub(super) in_force: moka::sync::Cache<Uuid, Gate>,
    /// The last good capacity per capacity key (prefix and event), for when the published one is
    /// zero, stale or unreadable.
    pub(super) last_good: Mutex<HashMap<String, CapacityRecord>>,
    /// Events this replica put on the admission loop's work list within `INDEXED_TTL`: a join storm
    /// adds each event once a second, not once a join.
    pub(super) indexed: moka::sync::Cache<Uuid, ()>,
}

/// How long a replica trusts that an event it indexed is still on the work list (the loop drops
/// idle events; a queued user's check after this adds it back).
const INDEXED_TTL: Duration = Duration::from_secs(1);

impl Default for Gates {
    fn default() -> Self {
        Self {
            in_force: moka::sync::Cache::builder()
                .max_capacity(4096)
                .time_to_live(GATE_TTL)
                .build(),
            last_good: Mutex::default(),
            indexed: moka::sync::Cache::builder()
                .max_capacity(4096)
                .time_to_live(INDEXED_TTL)
                .build(),
        }
    }
}

impl Gates {
    /// The event changed on this replica (threshold, opening, capacity): read its gate afresh.
    pub fn forget(&self, event_id: Uuid) {
        self.in_force.invalidate(&event_id);
    }
}
