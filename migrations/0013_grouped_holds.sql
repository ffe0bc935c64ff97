-- Grouped holds: the seat holds of one event that a replica's writer took together (see
-- service/src/reservations/batch.rs), decided and committed in one statement, one transaction.
--
-- hold_seats_batch answers exactly what hold_seats (0009) would answer for each request applied one
-- after the other in array order: may_buy first, then the per-user cap (counting the seats that
-- earlier requests of the batch took), then the seats (every seat must exist in the event, be
-- distinct and be available, counting the batch's earlier holds), the total, the user. A refused
-- request never aborts the others: its outcome is returned, where hold_seats raises
--   'seat_not_found'   (hold_seats: TKS01)
--   'seat_taken'       (TKS02; `taken` has the labels, as TKS02's message does)
--   'amount_too_large' (TKS03)
--   'user_gone'        (the reservations_user_id_fkey violation).
-- Other outcomes are hold_seats' own: 'no_event', 'not_on_sale', 'unproven', 'not_admitted',
-- 'over_cap', 'held' (one row per held seat, in request order; no seat for an empty request).
-- Each row names its request by its 0-based position.
--
-- Locks are taken up front in one order: the (user, event) cap locks sorted by key, then every seat
-- of the batch sorted by id, then the buyers (key share, as the reservation's foreign key takes it).
-- Two batches (two replicas, or two events' writers sharing a seat id) therefore wait for each
-- other instead of deadlocking, and the decisions run on rows no one else can change meanwhile.
--
-- Requests are the parallel arrays p_users .. p_fair_window_secs (one element per request); request
-- i's seats are the next p_seat_counts[i] elements of p_seat_ids.
CREATE FUNCTION hold_seats_batch(
    p_users            UUID[],
    p_events           UUID[],
    p_reservations     UUID[],
    p_numbers          TEXT[],
    p_hold_secs        DOUBLE PRECISION[],
    p_caps             INTEGER[],
    p_admissions       TEXT[],
    p_admitted_until   TIMESTAMPTZ[],
    p_fair_window_secs DOUBLE PRECISION[],
    p_seat_counts      INTEGER[],
    p_seat_ids         UUID[]
) RETURNS TABLE (request INTEGER, outcome TEXT, taken TEXT, held_seat UUID, held_label TEXT,
                 held_price INTEGER, held_until TIMESTAMPTZ)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    n          INTEGER := coalesce(cardinality(p_users), 0);
    v_verdict  TEXT[];
    v_outcome  TEXT[] := '{}';
    v_taken    TEXT[] := '{}';
    v_until    TIMESTAMPTZ[] := '{}';
    -- per request: where its wins start in v_win_*
    v_win_from INTEGER[] := '{}';
    -- the (user, event) pairs under a cap, and what each holds so far
    v_pair_user  UUID[];
    v_pair_event UUID[];
    v_pair_count BIGINT[];
    -- the batch's seats, sorted by id, as this transaction sees them
    v_sid    UUID[];
    v_sevent UUID[];
    v_slabel TEXT[];
    v_sprice INTEGER[];
    v_sfree  BOOLEAN[];
    v_known  UUID[];
    -- what is written at the end
    v_win_seat  UUID[] := '{}';
    v_win_res   UUID[] := '{}';
    v_win_price INTEGER[] := '{}';
    v_win_label TEXT[] := '{}';
    v_res_id    UUID[] := '{}';
    v_res_user  UUID[] := '{}';
    v_res_event UUID[] := '{}';
    v_res_num   TEXT[] := '{}';
    v_res_total INTEGER[] := '{}';
    v_res_until TIMESTAMPTZ[] := '{}';
    i INTEGER;
    j INTEGER;
    k INTEGER;
    p INTEGER;
    v_off     INTEGER := 0;
    v_cnt     INTEGER;
    v_seats   UUID[];
    v_in      INTEGER;
    v_busy    TEXT[];
    v_total   BIGINT;
    v_k1      INTEGER;
    v_k2      INTEGER;
BEGIN
    IF coalesce(cardinality(p_events), 0) <> n OR coalesce(cardinality(p_reservations), 0) <> n
       OR coalesce(cardinality(p_numbers), 0) <> n OR coalesce(cardinality(p_hold_secs), 0) <> n
       OR coalesce(cardinality(p_caps), 0) <> n OR coalesce(cardinality(p_admissions), 0) <> n
       OR coalesce(cardinality(p_admitted_until), 0) <> n
       OR coalesce(cardinality(p_fair_window_secs), 0) <> n
       OR coalesce(cardinality(p_seat_counts), 0) <> n
       OR (SELECT coalesce(sum(c), 0) FROM unnest(p_seat_counts) c) <> coalesce(cardinality(p_seat_ids), 0)
       OR EXISTS (SELECT 1 FROM unnest(p_seat_counts) c WHERE c IS NULL OR c < 0) THEN
        RAISE EXCEPTION 'hold_seats_batch: arrays of unequal length' USING ERRCODE = '22023';
    END IF;
    IF n = 0 THEN
        RETURN;
    END IF;

    SELECT array_agg(may_buy(t.e, t.a, t.u, t.w) ORDER BY t.i)
      INTO v_verdict
      FROM unnest(p_events, p_admissions, p_admitted_until, p_fair_window_secs)
           WITH ORDINALITY AS t(e, a, u, w, i);

    -- the cap locks hold_seats would take (admitted requests under a cap), in one order
    FOR v_k1, v_k2 IN
        SELECT DISTINCT hashtext(t.u::TEXT), hashtext(t.e::TEXT)
          FROM unnest(p_users, p_events, p_caps, v_verdict) AS t(u, e, c, v)
         WHERE t.c > 0 AND t.v = 'ok'
         ORDER BY 1, 2
    LOOP
        PERFORM pg_advisory_xact_lock(v_k1, v_k2);
    END LOOP;
    SELECT array_agg(q.u), array_agg(q.e), array_agg(q.cnt)
      INTO v_pair_user, v_pair_event, v_pair_count
      FROM (SELECT DISTINCT t.u, t.e
              FROM unnest(p_users, p_events, p_caps, v_verdict) AS t(u, e, c, v)
             WHERE t.c > 0 AND t.v = 'ok') AS pr
      CROSS JOIN LATERAL (
          SELECT pr.u, pr.e, coalesce(sum(ri.quantity), 0)::BIGINT AS cnt
            FROM reservations r JOIN reservation_items ri ON ri.reservation_id = r.id
           WHERE r.user_id = pr.u AND r.event_id = pr.e AND ri.seat_id IS NOT NULL
             AND (r.status = 'confirmed' OR (r.status = 'pending' AND coalesce(r.expires_at > now(), TRUE)))
      ) AS q;

    SELECT array_agg(s.id ORDER BY s.id), array_agg(s.event_id ORDER BY s.id),
           array_agg(s.seat_label::TEXT ORDER BY s.id), array_agg(s.price ORDER BY s.id),
           array_agg(s.status = 'available' ORDER BY s.id)
      INTO v_sid, v_sevent, v_slabel, v_sprice, v_sfree
      FROM (SELECT s.id, s.event_id, s.seat_label, s.price, s.status
              FROM seats s WHERE s.id = ANY (p_seat_ids) ORDER BY s.id FOR UPDATE) AS s;
    SELECT array_agg(u.id ORDER BY u.id) INTO v_known
      FROM (SELECT u.id FROM users u WHERE u.id = ANY (p_users) ORDER BY u.id FOR KEY SHARE) AS u;

    FOR i IN 1..n LOOP
        v_cnt := p_seat_counts[i];
        v_seats := coalesce(p_seat_ids[v_off + 1 : v_off + v_cnt], '{}');
        v_off := v_off + v_cnt;
        v_win_from[i] := cardinality(v_win_seat);
        v_outcome[i] := v_verdict[i];
        CONTINUE WHEN v_verdict[i] <> 'ok';

        p := NULL;
        IF p_caps[i] > 0 THEN
            FOR k IN 1..coalesce(cardinality(v_pair_user), 0) LOOP
                IF v_pair_user[k] = p_users[i] AND v_pair_event[k] = p_events[i] THEN
                    p := k;
                    EXIT;
                END IF;
            END LOOP;
            IF v_pair_count[p] + v_cnt > p_caps[i] THEN
                v_outcome[i] := 'over_cap';
                CONTINUE;
            END IF;
        END IF;

        -- hold_seats' rule: every seat distinct, of this event and available, else not found
        -- (some seat is missing, repeated or of another event) or taken (the labels of the rest)
        v_in := 0;
        v_busy := '{}';
        v_total := 0;
        FOR j IN 1..v_cnt LOOP
            k := array_position(v_sid, v_seats[j]);
            IF k IS NOT NULL AND v_sevent[k] = p_events[i]
               AND array_position(v_seats, v_seats[j]) = j THEN
                v_in := v_in + 1;
                v_total := v_total + v_sprice[k];
                IF NOT v_sfree[k] THEN
                    v_busy := v_busy || v_slabel[k];
                END IF;
            END IF;
        END LOOP;
        IF v_in <> v_cnt THEN
            v_outcome[i] := 'seat_not_found';
            CONTINUE;
        END IF;
        IF cardinality(v_busy) > 0 THEN
            v_outcome[i] := 'seat_taken';
            v_taken[i] := (SELECT string_agg(b, ', ' ORDER BY b COLLATE "C") FROM unnest(v_busy) AS b);
            CONTINUE;
        END IF;
        IF v_total > 2147483647 THEN
            v_outcome[i] := 'amount_too_large';
            CONTINUE;
        END IF;
        IF array_position(v_known, p_users[i]) IS NULL THEN
            v_outcome[i] := 'user_gone';
            CONTINUE;
        END IF;

        v_outcome[i] := 'held';
        v_until[i] := now() + make_interval(secs => p_hold_secs[i]);
        FOR j IN 1..v_cnt LOOP
            k := array_position(v_sid, v_seats[j]);
            v_sfree[k] := FALSE;
            v_win_seat := v_win_seat || v_sid[k];
            v_win_res := v_win_res || p_reservations[i];
            v_win_price := v_win_price || v_sprice[k];
            v_win_label := v_win_label || v_slabel[k];
        END LOOP;
        IF p IS NOT NULL THEN
            v_pair_count[p] := v_pair_count[p] + v_cnt;
        ELSE
            -- a hold without a cap still counts against a later capped request of the same pair
            FOR k IN 1..coalesce(cardinality(v_pair_user), 0) LOOP
                IF v_pair_user[k] = p_users[i] AND v_pair_event[k] = p_events[i] THEN
                    v_pair_count[k] := v_pair_count[k] + v_cnt;
                END IF;
            END LOOP;
        END IF;
        v_res_id := v_res_id || p_reservations[i];
        v_res_user := v_res_user || p_users[i];
        v_res_event := v_res_event || p_events[i];
        v_res_num := v_res_num || p_numbers[i];
        v_res_total := v_res_total || v_total::INTEGER;
        v_res_until := v_res_until || v_until[i];
    END LOOP;

    UPDATE seats s SET status = 'locked', held_by = w.res
      FROM unnest(v_win_seat, v_win_res) AS w(id, res)
     WHERE s.id = w.id;
    INSERT INTO reservations (id, user_id, event_id, reservation_number, total_amount, expires_at)
    SELECT * FROM unnest(v_res_id, v_res_user, v_res_event, v_res_num, v_res_total, v_res_until);
    INSERT INTO reservation_items (reservation_id, seat_id, quantity, unit_price, subtotal)
    SELECT w.res, w.id, 1, w.price, w.price FROM unnest(v_win_res, v_win_seat, v_win_price) AS w(res, id, price);

    FOR i IN 1..n LOOP
        request := i - 1;
        outcome := v_outcome[i];
        taken := v_taken[i];
        held_until := v_until[i];
        held_seat := NULL;
        held_label := NULL;
        held_price := NULL;
        IF outcome = 'held' AND p_seat_counts[i] > 0 THEN
            FOR j IN 1..p_seat_counts[i] LOOP
                k := v_win_from[i] + j;
                held_seat := v_win_seat[k];
                held_label := v_win_label[k];
                held_price := v_win_price[k];
                RETURN NEXT;
            END LOOP;
        ELSE
            RETURN NEXT;
        END IF;
    END LOOP;
END
$$;
