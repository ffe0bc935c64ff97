//! Every Redis key the project uses is built here, so the service and the operator cannot disagree on
//! a name. Keys carry one prefix (configurable, so tests and tenants can share a Redis) and a per-event
//! hash tag `{evt:<id>}` so one event's keys share a Redis Cluster slot and multi-key scripts work.
//!
//! The keys one script or transaction touches together come from one method here (`waiting_room`,
//! `waiting_room_entry`, `presence_pair`, `login_throttle`), and the tests check that each such set
//! lives in one slot: a Redis Cluster refuses a script or `MULTI` across slots (`CROSSSLOT`), and a
//! single Redis would never tell.

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

    /// Lottery draws of an event's fair opening: hash user -> drawn queue score, kept after the user
    /// leaves so that coming back never draws again.
    pub fn lottery_draws(&self, event_id: Uuid) -> String {
        self.evt(event_id, "draws")
    }

    /// The queue and the admitted set of an event: the keys of the admission scripts.
    pub fn waiting_room(&self, event_id: Uuid) -> Vec<String> {
        vec![self.queue(event_id), self.active(event_id)]
    }

    /// The keys of a waiting-room entry (`check.lua`): queue, admitted, lottery draws, outflow.
    pub fn waiting_room_entry(&self, event_id: Uuid) -> Vec<String> {
        vec![
            self.queue(event_id),
            self.active(event_id),
            self.lottery_draws(event_id),
            self.outflow(event_id),
        ]
    }

    /// Events whose queue may be non-empty (the admission loop's work list; a set of event ids). It
    /// spans events, so no script touches it: it is written beside them.
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

    /// The keys of the presence scripts: who is present, and until when.
    pub fn presence_pair(&self, event_id: Uuid) -> Vec<String> {
        vec![self.presence(event_id), self.presence_seen(event_id)]
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
    /// e-mail, which has no `:`): a counter living one failure window from the first failure. Tagged
    /// by the account, like the account's own counter: the throttle's transactions touch both.
    pub fn login_failures(&self, account: &str, address: &str) -> String {
        format!("{}:login-fail:{{acct:{account}}}:{address}", self.prefix)
    }

    /// Failed logins of one account from every address, over the same window.
    pub fn login_account_failures(&self, account: &str) -> String {
        format!("{}:login-fail-account:{{acct:{account}}}", self.prefix)
    }

    /// The login throttle's keys for `account` tried from `address`: (by address, by account).
    pub fn login_throttle(&self, account: &str, address: &str) -> [String; 2] {
        [
            self.login_failures(account, address),
            self.login_account_failures(account),
        ]
    }

    /// Fixed-window rate-limit counter for one action and subject (ip or account) in one window.
    pub fn rate_limit(&self, action: &str, subject: &str, window: u64) -> String {
        format!("{}:rl:{action}:{subject}:{window}", self.prefix)
    }
}

/// The Redis Cluster slot of `key`: CRC16 (XMODEM) of its hash tag — the part between the first `{`
/// and the next `}`, when not empty — or of the whole key, modulo 16384.
pub fn slot(key: &str) -> u16 {
    let b = key.as_bytes();
    let tagged = b.iter().position(|&c| c == b'{').and_then(|open| {
        let rest = &b[open + 1..];
        let close = rest.iter().position(|&c| c == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    crc16::State::<crc16::XMODEM>::calculate(tagged.unwrap_or(b)) % 16384
}

/// `keys`, which one script or transaction touches together. Debug builds (every test run) check
/// that they share one slot, so a set that a Redis Cluster would refuse fails on a single Redis too.
pub fn together<K: AsRef<str>>(keys: Vec<K>) -> Vec<K> {
    debug_assert!(
        keys.windows(2)
            .all(|w| slot(w[0].as_ref()) == slot(w[1].as_ref())),
        "keys of one script or transaction in different Redis Cluster slots: {:?}",
        keys.iter().map(AsRef::as_ref).collect::<Vec<_>>()
    );
    keys
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
            "tiketi:v1:login-fail:{acct:a@b.kr}:2001:db8::/64"
        );
        assert_eq!(
            k.login_account_failures("a@b.kr"),
            "tiketi:v1:login-fail-account:{acct:a@b.kr}"
        );
        assert_eq!(Keys::new("t1").queue(e), format!("t1:{{evt:{id}}}:queue"));
    }

    /// The examples of the Redis Cluster specification's key distribution model.
    #[test]
    fn slot_is_redis_cluster_s_hash_slot() {
        assert_eq!(slot("123456789"), 0x31c3);
        assert_eq!(slot("{user1000}.following"), slot("{user1000}.followers"));
        assert_eq!(slot("foo{{bar}}zap"), slot("{bar"));
        assert_eq!(slot("foo{bar}{zap}"), slot("bar"));
        assert_eq!(slot("foo{}{bar}"), slot("foo{}{bar}"));
        assert_ne!(slot("foo{}{bar}"), slot("bar"));
    }

    /// Every set of keys a script or transaction touches together lives in one slot, for any event
    /// and any account (braces in an account included: both keys cut the tag at the same place).
    #[test]
    fn keys_used_together_share_a_slot() {
        let prefixes = ["tiketi:v1", "t1", "a:b"];
        let accounts = ["a@b.kr", "", "}", "{", "x}y{z", "{evt:1}", "ü@例え.jp"];
        for prefix in prefixes {
            let k = Keys::new(prefix);
            for n in 0..64u128 {
                let e = Uuid::from_u128(n.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835));
                for set in [
                    k.waiting_room(e),
                    k.waiting_room_entry(e),
                    k.presence_pair(e),
                ] {
                    let slots: Vec<u16> = set.iter().map(|key| slot(key)).collect();
                    assert!(slots.windows(2).all(|w| w[0] == w[1]), "{set:?}: {slots:?}");
                    assert_eq!(together(set.clone()), set);
                }
            }
            for account in accounts {
                let [by_address, by_account] = k.login_throttle(account, "2001:db8::/64");
                assert_eq!(slot(&by_address), slot(&by_account), "{account:?}");
            }
        }
    }

    #[test]
    #[should_panic(expected = "different Redis Cluster slots")]
    fn together_refuses_keys_of_two_events() {
        let k = Keys::default();
        together(vec![
            k.queue(Uuid::from_u128(1)),
            k.queue(Uuid::from_u128(2)),
        ]);
    }
}
