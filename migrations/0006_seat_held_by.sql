-- A seat is freed or sold only by the reservation that holds it. Before this column, releasing a
-- reservation freed every seat its items referenced, whoever held it now: A's hold expires, B buys
-- the seat, an admin revives A, A cancels — and B's paid seat was `available` again.
--
-- No foreign key: the hold sets held_by in the same statement that locks the seat, before the
-- reservation row is inserted in that transaction, and a deferred constraint check would cost every
-- hold a trigger. The reservation lifecycle (service/src/reservations/lifecycle.rs) is the only
-- writer. Not indexed: lookups go through reservation_items and the seat's primary key, and an index
-- would make every hold a non-HOT update (see 0005).
ALTER TABLE seats ADD COLUMN held_by UUID;

UPDATE seats s SET held_by = r.id
FROM reservation_items ri JOIN reservations r ON r.id = ri.reservation_id
WHERE ri.seat_id = s.id AND s.status IN ('locked', 'reserved') AND r.status IN ('pending', 'confirmed');
