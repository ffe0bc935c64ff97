//! Every Redis key the project uses is built here, so the service and the operator cannot disagree on
//! a name. Keys carry one prefix (configurable, so tests and tenants can share a Redis) and a per-event
//! hash tag `{evt:<id>}` so one event's keys share a Redis Cluster slot and multi-key scripts work.

use uuid::Uuid;

/// The default prefix; the version lets a future layout change coexist with the old one.
pub const DEFAULT_PREFIX: &str = "tiketi:v1";

#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
}

impl Default for Keys {
    fn default() -> Self {
        Self::new(DEFAULT_PREFIX)
    }
}

impl Keys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn evt(&self, event_id: Uuid, what: &str) -> String {
        format!("{}:{{evt:{event_id}}}:{what}", self.prefix)
    }

    /// Cached `GET /api/events/:id` response (string, short TTL).
    pub fn event_detail_cache(&self, event_id: Uuid) -> String {
        self.evt(event_id, "detail")
    }

    /// Version token of an event's seat map (string, replaced on every change of its seats): a
    /// replica whose snapshot recorded another token rebuilds it.
    pub fn seat_map_version(&self, event_id: Uuid) -> String {
        self.evt(event_id, "seatmap:ver")
    }

    /// Generation counter of the event list cache: bumping it invalidates every cached page at once
    /// (the original used `KEYS events:*`, which blocks Redis).
    pub fn events_list_generation(&self) -> String {
        format!("{}:events:gen", self.prefix)
    }

    /// One cached page of `GET /api/events` under a given generation.
    pub fn events_list_cache(&self, generation: i64, query: &str) -> String {
        format!("{}:events:list:{generation}:{query}", self.prefix)
    }

    /// Waiting room: sorted set of user ids scored by enqueue time (ms).
    pub fn queue(&self, event_id: Uuid) -> String {
        self.evt(event_id, "queue")
    }

    /// Admitted users: sorted set of user ids scored by the expiry of their admission (ms); a place
    /// taken at an open gate rather than given by the admission loop is marked by a half ms.
    pub fn active(&self, event_id: Uuid) -> String {
        self.evt(event_id, "active")
    }

    /// Events whose queue may be non-empty (the admission loop's work list; a set of event ids).
    /// Lottery draws of an event's fair opening: hash user -> drawn queue score, kept after the user
    /// leaves so that coming back never draws again.
    pub fn lottery_draws(&self, event_id: Uuid) -> String {
        self.evt(event_id, "draws")
    }

    pub fn queue_index(&self) -> String {
        format!("{}:queues", self.prefix)
    }

    /// Measured admissions per second of an event (string float), for position ETAs.
    pub fn admission_rate(&self, event_id: Uuid) -> String {
        self.evt(event_id, "admit-rate")
    }

    /// Users present in an event room across replicas: hash user id -> open sockets.
    pub fn presence(&self, event_id: Uuid) -> String {
        self.evt(event_id, "presence")
    }

    /// When each present user was last vouched for by a live replica: sorted set user id -> expiry
    /// (ms, Redis clock). Users whose expiry passed belonged to a replica that died.
    pub fn presence_seen(&self, event_id: Uuid) -> String {
        self.evt(event_id, "presence-seen")
    }

    /// Users the event's waiting room may admit: its share of the target's ready capacity, published
    /// by the operator as a `rules::CapacityRecord` (JSON with the publication time).
    pub fn capacity(&self, event_id: Uuid) -> String {
        self.evt(event_id, "capacity")
    }

    /// The event's measured waiting-room outflow (a `rules::OutflowRecord`, JSON), published by the
    /// service's admission loop: position ETAs and the operator's drain-time rule read it.
    pub fn outflow(&self, event_id: Uuid) -> String {
        self.evt(event_id, "outflow")
    }

    /// Users who left the event's queue (counter the admission loop drains into the outflow).
    pub fn queue_left(&self, event_id: Uuid) -> String {
        self.evt(event_id, "queue-left")
    }

    /// Live service replicas: sorted set instance id -> heartbeat expiry (ms).
    pub fn replicas(&self) -> String {
        format!("{}:replicas", self.prefix)
    }

    /// A user's realtime session (rooms and seat selection) for restore on reconnect (JSON).
    pub fn session(&self, user_id: Uuid) -> String {
        format!("{}:session:{user_id}", self.prefix)
    }

    /// Lease of a singleton background loop (value = holder token).
    pub fn lease(&self, name: &str) -> String {
        format!("{}:lease:{name}", self.prefix)
    }

    /// Channel prefix of the Socket.IO Redis adapter.
    pub fn socketio_channel_prefix(&self) -> String {
        format!("{}:sio", self.prefix)
    }

    /// Failed logins of one client address (`client_ip::limit_key`) on one account (normalised
    /// e-mail, which has no `:`): a counter living one failure window from the first failure.
    pub fn login_failures(&self, account: &str, address: &str) -> String {
        format!("{}:login-fail:{account}:{address}", self.prefix)
    }

    /// Failed logins of one account from every address, over the same window.
    pub fn login_account_failures(&self, account: &str) -> String {
        format!("{}:login-fail-account:{account}", self.prefix)
    }

    /// Fixed-window rate-limit counter for one action and subject (ip or account) in one window.
    pub fn rate_limit(&self, action: &str, subject: &str, window: u64) -> String {
        format!("{}:rl:{action}:{subject}:{window}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Renaming a key is a deliberate change: this test lists every format.
    #[test]
    fn keys_formats_are_stable() {
        let k = Keys::default();
        let e = Uuid::nil();
        let id = "00000000-0000-0000-0000-000000000000";
        assert_eq!(
            k.event_detail_cache(e),
            format!("tiketi:v1:{{evt:{id}}}:detail")
        );
        assert_eq!(k.events_list_generation(), "tiketi:v1:events:gen");
        assert_eq!(
            k.events_list_cache(3, "all:1:10:"),
            "tiketi:v1:events:list:3:all:1:10:"
        );
        assert_eq!(k.queue(e), format!("tiketi:v1:{{evt:{id}}}:queue"));
        assert_eq!(
            k.seat_map_version(e),
            format!("tiketi:v1:{{evt:{id}}}:seatmap:ver")
        );
        assert_eq!(k.active(e), format!("tiketi:v1:{{evt:{id}}}:active"));
        assert_eq!(k.capacity(e), format!("tiketi:v1:{{evt:{id}}}:capacity"));
        assert_eq!(k.outflow(e), format!("tiketi:v1:{{evt:{id}}}:outflow"));
        assert_eq!(
            k.queue_left(e),
            format!("tiketi:v1:{{evt:{id}}}:queue-left")
        );
        assert_eq!(
            k.presence_seen(e),
            format!("tiketi:v1:{{evt:{id}}}:presence-seen")
        );
        assert_eq!(
            k.rate_limit("login", "1.2.3.4", 7),
            "tiketi:v1:rl:login:1.2.3.4:7"
        );
        assert_eq!(
            k.login_failures("a@b.kr", "2001:db8::/64"),
            "tiketi:v1:login-fail:a@b.kr:2001:db8::/64"
        );
        assert_eq!(
            k.login_account_failures("a@b.kr"),
            "tiketi:v1:login-fail-account:a@b.kr"
        );
        assert_eq!(Keys::new("t1").queue(e), format!("t1:{{evt:{id}}}:queue"));
    }
}
