-- Every writer of seats locks them in id order, as hold_seats_batch (0013) does: hold_seats (0009)
-- locked the requested seats in the order its UPDATE met them, so a one-hold statement that took a
-- reservation's second seat and waited for its first could deadlock with a grouped hold, a payment
-- or a release that took the first and waited for the second. Unchanged otherwise.
CREATE OR REPLACE FUNCTION hold_seats(
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

    PERFORM 1 FROM seats s WHERE s.id = ANY (p_seats) ORDER BY s.id FOR UPDATE;
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
