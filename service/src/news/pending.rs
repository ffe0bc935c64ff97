//! The views of news posts counted on this replica and not yet written (`views` writes them). Apart
//! from the writer so `AppState` can hold the counts without depending on functions that take it.

use std::{collections::HashMap, sync::Mutex};

use uuid::Uuid;

/// Views counted here and not yet written, per post.
#[derive(Default)]
pub struct Views {
    pending: Mutex<HashMap<Uuid, i64>>,
}

impl Views {
    /// Counts one view of `id`; returns this replica's unwritten views of it, this one included.
    pub fn add(&self, id: Uuid) -> i64 {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let n = pending.entry(id).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }

    /// Takes every pending count (to be written, or put back if the write fails).
    pub(super) fn take(&self) -> HashMap<Uuid, i64> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub(super) fn put_back(&self, counts: HashMap<Uuid, i64>) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for (id, n) in counts {
            let p = pending.entry(id).or_insert(0);
            *p = p.saturating_add(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_add_counts_per_post_and_put_back_keeps_later_views() {
        let v = Views::default();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(v.add(a), 1);
        assert_eq!(v.add(a), 2);
        assert_eq!(v.add(b), 1);
        let taken = v.take();
        assert_eq!(taken.len(), 2);
        assert_eq!(v.add(a), 1, "a flush in flight starts a new count");
        v.put_back(taken);
        assert_eq!(v.take(), HashMap::from([(a, 3), (b, 1)]));
    }
}
