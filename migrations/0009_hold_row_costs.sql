-- The hold's PostgreSQL work per row (0008 made the hold one statement; this trims what each of its
-- rows costs). Measured with the bench's holds scenario, CPU per hold of all PostgreSQL backends:
-- docs/benchmarks.md.
--
-- 1. Indexes a hold writes and no hot path reads. A hold inserts one reservation (8 index entries
--    before this) and one item (4).
--    - reservations_status_created_idx (status, created_at DESC): only the admin list filtered by
--      status. That list walks reservations_created_idx newest first and filters the status (the
--      statuses are few and common), so it stays an index scan stopped at its LIMIT.
--    - reservations_user_created_idx (user_id, created_at DESC): the buyer's own list and the
--      users FK. reservations_user_event_idx (user_id, event_id, from 0005) serves both by its
--      leading column; a user's few reservations are sorted in memory.
--    - reservation_items_ticket_type_idx: every seat item has no ticket type, and every use (the
--      ticket_types FK's ON DELETE SET NULL, stock sums) looks up a non-null ticket type, so the
--      index keeps only the items that have one.
DROP INDEX IF EXISTS reservations_status_created_idx;
DROP INDEX IF EXISTS reservations_user_created_idx;
DROP INDEX IF EXISTS reservation_items_ticket_type_idx;
CREATE INDEX reservation_items_ticket_type_idx ON reservation_items (ticket_type_id)
    WHERE ticket_type_id IS NOT NULL;

-- 2. The seats' updated_at trigger ran a PL/pgSQL function for every seat flip. It now runs only
--    when the UPDATE did not set updated_at itself (the trigger's WHEN is evaluated without a
--    function call), and the hold sets it in its own UPDATE. Every other seat UPDATE still gets the
--    trigger's now().
DROP TRIGGER seats_updated_at ON seats;
CREATE TRIGGER seats_updated_at BEFORE UPDATE ON seats FOR EACH ROW
    WHEN (NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at)
    EXECUTE FUNCTION set_updated_at();

-- 0008's hold_seats, with updated_at set by the seat UPDATE (the only change).
CREATE OR REPLACE FUNCTION hold_seats(
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
        UPDATE seats s SET status = 'locked', held_by = p_reservation, updated_at = now()
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
