-- Demand, not admissions: the users on an event's page plus those waiting in its queue, the highest
-- sample within the minute. concurrent_users alone is capped by admission (the threshold and the
-- ready capacity), so a forecast learnt from it would never ask for more than the last sale got.
ALTER TABLE traffic_logs ADD COLUMN demand_users INTEGER CHECK (demand_users >= 0);

-- Rows written before this column: the sum of the minute's two peaks stands in (an upper bound).
CREATE OR REPLACE VIEW artist_sale_peaks AS
SELECT artist_name,
       event_id,
       min(minute)           AS first_minute,
       max(minute)           AS last_minute,
       max(concurrent_users) AS peak_concurrent_users,
       max(queue_users)      AS peak_queue_users,
       max(replicas)         AS peak_replicas,
       max(COALESCE(demand_users, concurrent_users + queue_users)) AS peak_demand_users
FROM traffic_logs
WHERE artist_name IS NOT NULL
GROUP BY artist_name, event_id;
