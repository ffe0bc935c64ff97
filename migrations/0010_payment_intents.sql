-- Payment intents: one row per attempt to take money for a reservation, written before the provider
-- is called, so every charge the provider may hold is on record and can be resolved by whoever finds
-- it (the request that made it, a retry, or the recovery job after a replica died).
--
-- States (service/src/payments/intent.rs owns the transitions; docs/payments.md explains them):
--   created        recorded; the provider may or may not have charged `id` yet
--   charged        the provider holds the money for `id`; no reservation is confirmed on it yet
--   captured       the reservation was confirmed on this charge, in the same transaction
--   refund_pending the charge can never confirm (or was cancelled after it did): refund it
--   refunded       the provider refunded it (terminal)
--   failed         the provider did not charge it (terminal)
--
-- `id` is the idempotency key sent to the provider: a retry of the same intent can never charge twice,
-- and a refunded intent is never reused (a new attempt gets a new intent and a new key).
CREATE TABLE payment_intents (
    id             UUID PRIMARY KEY,
    -- RESTRICT: a record of money outlives nothing it refers to
    reservation_id UUID NOT NULL REFERENCES reservations (id) ON DELETE RESTRICT,
    amount         INTEGER NOT NULL CONSTRAINT payment_intents_amount_check CHECK (amount >= 0),
    method         VARCHAR(50) NOT NULL
                   CONSTRAINT payment_intents_method_check CHECK (method IN ('naver_pay', 'kakao_pay', 'bank_transfer')),
    state          VARCHAR(20) NOT NULL DEFAULT 'created'
                   CONSTRAINT payment_intents_state_check
                   CHECK (state IN ('created', 'charged', 'captured', 'refund_pending', 'refunded', 'failed')),
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- At most one intent per reservation that may still take or holds money: concurrent payments of one
-- reservation share it (same key, one charge), and a reservation is never confirmed on two charges.
CREATE UNIQUE INDEX payment_intents_open_key ON payment_intents (reservation_id)
    WHERE state IN ('created', 'charged', 'captured');
CREATE INDEX payment_intents_reservation_idx ON payment_intents (reservation_id);
-- the recovery job scans only unresolved intents, oldest first
CREATE INDEX payment_intents_unresolved_idx ON payment_intents (updated_at)
    WHERE state IN ('created', 'charged', 'refund_pending');

CREATE TRIGGER payment_intents_updated_at BEFORE UPDATE ON payment_intents FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- Reservations paid before intents existed were charged under their own id as the key: record those
-- charges as captured so every confirmed, paid reservation has its one captured intent.
INSERT INTO payment_intents (id, reservation_id, amount, method, state, created_at, updated_at)
SELECT id, id, total_amount, coalesce(payment_method, 'naver_pay'), 'captured', updated_at, updated_at
FROM reservations WHERE status = 'confirmed' AND payment_status = 'completed';
