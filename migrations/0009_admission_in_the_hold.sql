-- The waiting room decided where the seat is decided. A replica's gate check (Redis) only reports
-- what it saw — the caller's admission or its absence — and this function decides with
-- PostgreSQL's clock, in the statement (or transaction) that takes the seats or the stock: a check
-- made by a replica whose clock is behind, or made before the opening and run after it (the
-- request waited for a pooled connection), can no longer sell a seat to someone who was never
-- admitted.
--
-- may_buy(event, admission, admitted_until, fair_window_secs) answers one of
--   'no_event'     the event does not exist;
--   'not_on_sale'  outside the sale window (or cancelled/ended), whatever the admission;
--   'unproven'     the replica could not read the waiting room (Redis down) and has no admission of
--                  the caller on record: refused for now (503), never waved through;
--   'not_admitted' no live admission, or an admission taken at an open first-come gate while
--                  PostgreSQL's clock is still inside the opening lottery window (the lottery is
--                  drawn first: see service/src/queue/opening.rs);
--   'ok'.
-- The admission (the service's queue::Verdict, service/src/queue/verdict.rs) is one of
--   'admitted'      a live admission from the queue (or recorded by this replica), until p_admitted_until;
--   'gate'          a place taken at an open first-come gate (by this request or earlier: Redis marks
--                   such places, see service/src/queue/check.lua), until p_admitted_until;
--   'none'          not admitted ('before_open' is reported as 'none': the replica's clock said the
--                   sale had not opened, so it admitted nobody);
--   'unproven'      see above.
CREATE FUNCTION may_buy(
    p_event            UUID,
    p_admission        TEXT,
    p_admitted_until   TIMESTAMPTZ,
    p_fair_window_secs DOUBLE PRECISION
) RETURNS TEXT
LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN e.id IS NULL THEN 'no_event'
        WHEN NOT coalesce(e.status IN ('upcoming', 'on_sale', 'sold_out')
                          AND now() >= e.sale_start_date AND now() < e.sale_end_date, FALSE)
            THEN 'not_on_sale'
        WHEN p_admission = 'unproven' THEN 'unproven'
        WHEN p_admission IN ('admitted', 'gate') AND coalesce(p_admitted_until > now(), FALSE)
             AND (p_admission = 'admitted'
                  OR now() >= e.sale_start_date + make_interval(secs => p_fair_window_secs))
            THEN 'ok'
        ELSE 'not_admitted'
    END
    FROM (SELECT 1) AS one LEFT JOIN events e ON e.id = p_event
$$;

-- hold_seats (0008) with the admission as three more arguments, decided by may_buy first; its other
-- outcomes and errors are unchanged, plus 'not_admitted' and 'unproven' (nothing held or written).
-- The old signature is dropped, not kept: a replica still calling it fails its holds (closed)
-- instead of skipping the decision.
DROP FUNCTION hold_seats(UUID, UUID, UUID[], UUID, TEXT, DOUBLE PRECISION, INTEGER);

CREATE FUNCTION hold_seats(
    p_user        UUID,
    p_event       UUID,
    p_seats       UUID[],
    p_reservation UUID,
    p_number      TEXT,
    p_hold_secs   DOUBLE PRECISION,
    p_cap         INTEGER,
    p_admission   TEXT,
    p_admitted_until TIMESTAMPTZ,
    p_fair_window_secs DOUBLE PRECISION
) RETURNS TABLE (outcome TEXT, held_seat UUID, held_label TEXT, held_price INTEGER, held_until TIMESTAMPTZ)
LANGUAGE plpgsql AS $$
DECLARE
    v_verdict TEXT;
    v_count   BIGINT;
    v_ids     UUID[];
    v_labels  TEXT[];
    v_prices  INTEGER[];
    v_same    BOOLEAN;
    v_total   BIGINT;
    v_taken   TEXT;
    v_until   TIMESTAMPTZ;
BEGIN
    v_verdict := may_buy(p_event, p_admission, p_admitted_until, p_fair_window_secs);
    IF v_verdict <> 'ok' THEN
        RETURN QUERY SELECT v_verdict, NULL::UUID, NULL::TEXT, NULL::INTEGER, NULL::TIMESTAMPTZ;
        RETURN;
    END IF;

    -- the per-user cap, checked and consumed as one step: the (user, event) lock serialises one
    -- user's concurrent holds and bookings of the event until this statement's transaction ends
    IF p_cap > 0 THEN
        PERFORM pg_advisory_xact_lock(hashtext(p_user::TEXT), hashtext(p_event::TEXT));
        SELECT coalesce(sum(ri.quantity), 0)
          INTO v_count
          FROM reservations r JOIN reservation_items ri ON ri.reservation_id = r.id
         WHERE r.user_id = p_user AND r.event_id = p_event AND ri.seat_id IS NOT NULL
           AND (r.status = 'confirmed' OR (r.status = 'pending' AND coalesce(r.expires_at > now(), TRUE)));
        IF v_count + cardinality(p_seats) > p_cap THEN
            RETURN QUERY SELECT 'over_cap'::TEXT, NULL::UUID, NULL::TEXT, NULL::INTEGER, NULL::TIMESTAMPTZ;
            RETURN;
        END IF;
    END IF;

    WITH locked AS (
        UPDATE seats s SET status = 'locked', held_by = p_reservation
         WHERE s.id = ANY (p_seats) AND s.status = 'available'
        RETURNING s.id, s.event_id, s.seat_label, s.price
    )
    SELECT array_agg(l.id), array_agg(l.seat_label::TEXT), array_agg(l.price),
           coalesce(bool_and(l.event_id = p_event), TRUE), coalesce(sum(l.price), 0), count(*)
      INTO v_ids, v_labels, v_prices, v_same, v_total, v_count
      FROM locked l;

    IF v_count <> cardinality(p_seats) OR NOT v_same THEN
        SELECT count(*),
               string_agg(s.seat_label, ', ' ORDER BY s.seat_label COLLATE "C")
                   FILTER (WHERE s.status <> 'available' AND s.held_by IS DISTINCT FROM p_reservation)
          INTO v_count, v_taken
          FROM seats s WHERE s.id = ANY (p_seats) AND s.event_id = p_event;
        IF v_count <> cardinality(p_seats) THEN
            RAISE EXCEPTION 'seat not in event' USING ERRCODE = 'TKS01';
        END IF;
        RAISE EXCEPTION '%', coalesce(v_taken, '') USING ERRCODE = 'TKS02';
    END IF;
    IF v_total > 2147483647 THEN
        RAISE EXCEPTION 'total too large' USING ERRCODE = 'TKS03';
    END IF;

    INSERT INTO reservations (id, user_id, event_id, reservation_number, total_amount, expires_at)
    VALUES (p_reservation, p_user, p_event, p_number, v_total::INTEGER, now() + make_interval(secs => p_hold_secs))
    RETURNING expires_at INTO v_until;
    INSERT INTO reservation_items (reservation_id, seat_id, quantity, unit_price, subtotal)
    SELECT p_reservation, u.id, 1, u.price, u.price FROM unnest(v_ids, v_prices) AS u(id, price);

    RETURN QUERY
        SELECT 'held'::TEXT, u.id, u.label, u.price, v_until
          FROM unnest(v_ids, v_labels, v_prices) WITH ORDINALITY AS u(id, label, price, n)
         ORDER BY u.n;
END
$$;
