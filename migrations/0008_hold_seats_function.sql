-- A seat hold in one round trip. Before this function the service ran the hold as a transaction of
-- nine statements (BEGIN, sale window, per-user lock, per-user count, seat UPDATE, reservation INSERT,
-- one INSERT per item, COMMIT), each a round trip holding a pooled connection: 1,000 holds/s on 2
-- cores, most of it spent waiting. Called as one statement outside an explicit transaction, the
-- function's work is one implicit transaction: the per-user advisory lock ends with it, and any
-- exception rolls every step back.
--
-- Outcomes, as rows (outcome, seat, label, price, expiry):
--   'held'       one row per held seat, in the order the seats were locked;
--   'no_event'   the event does not exist;
--   'not_on_sale' the event exists but is not inside its sale window (or is cancelled/ended);
--   'over_cap'   the per-user seat cap (p_cap > 0) would be exceeded; nothing was changed.
-- Failures after seats were locked raise, so the locks are undone with the statement:
--   SQLSTATE TKS01  a requested seat is not in the event;
--   SQLSTATE TKS02  a requested seat is taken; the message lists the taken seats' labels;
--   SQLSTATE TKS03  the total does not fit the INTEGER total_amount;
--   23503 (reservations_user_id_fkey) the user no longer exists.
--
-- The seat UPDATE matches by primary key alone and compares the event afterwards (see 0005: a
-- generic plan given `event_id = …` walked every seat of a fresh event). Seats are locked in the
-- order of the primary-key index scan, so two overlapping holds can never deadlock.
CREATE FUNCTION hold_seats(
    p_user        UUID,
    p_event       UUID,
    p_seats       UUID[],
    p_reservation UUID,
    p_number      TEXT,
    p_hold_secs   DOUBLE PRECISION,
    p_cap         INTEGER
) RETURNS TABLE (outcome TEXT, held_seat UUID, held_label TEXT, held_price INTEGER, held_until TIMESTAMPTZ)
LANGUAGE plpgsql AS $$
DECLARE
    v_on_sale BOOLEAN;
    v_count   BIGINT;
    v_ids     UUID[];
    v_labels  TEXT[];
    v_prices  INTEGER[];
    v_same    BOOLEAN;
    v_total   BIGINT;
    v_taken   TEXT;
    v_until   TIMESTAMPTZ;
BEGIN
    SELECT coalesce(e.status IN ('upcoming', 'on_sale', 'sold_out')
                    AND now() >= e.sale_start_date AND now() < e.sale_end_date, FALSE)
      INTO v_on_sale
      FROM events e WHERE e.id = p_event;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'no_event'::TEXT, NULL::UUID, NULL::TEXT, NULL::INTEGER, NULL::TIMESTAMPTZ;
        RETURN;
    END IF;
    IF NOT v_on_sale THEN
        RETURN QUERY SELECT 'not_on_sale'::TEXT, NULL::UUID, NULL::TEXT, NULL::INTEGER, NULL::TIMESTAMPTZ;
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
