-- Sale traffic history, the operator's forecasting input. One row per event and minute while the
-- event is in its sale window. No foreign key and artist_name copied: the history of a sale must
-- survive the deletion of its event, still as its own sale (one peak per event in the views).
CREATE TABLE traffic_logs (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id         UUID NOT NULL,
    artist_name      VARCHAR(255),
    minute           TIMESTAMPTZ NOT NULL,
    concurrent_users INTEGER NOT NULL CHECK (concurrent_users >= 0),
    queue_users      INTEGER NOT NULL DEFAULT 0 CHECK (queue_users >= 0),
    replicas         INTEGER NOT NULL DEFAULT 1 CHECK (replicas >= 0),
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT traffic_logs_minute_check CHECK (minute = date_trunc('minute', minute)),
    CONSTRAINT traffic_logs_event_minute_key UNIQUE (event_id, minute)
);
CREATE INDEX traffic_logs_artist_idx ON traffic_logs (artist_name, minute DESC);

-- One row per past sale: its peak concurrent users and queue depth (the operator's per-event basis).
CREATE VIEW artist_sale_peaks AS
SELECT artist_name,
       event_id,
       min(minute)           AS first_minute,
       max(minute)           AS last_minute,
       max(concurrent_users) AS peak_concurrent_users,
       max(queue_users)      AS peak_queue_users,
       max(replicas)         AS peak_replicas
FROM traffic_logs
WHERE artist_name IS NOT NULL
GROUP BY artist_name, event_id;

-- The original design's per-artist averages, derived instead of maintained by a job.
CREATE VIEW artist_averages AS
SELECT artist_name,
       round(avg(peak_concurrent_users))::INTEGER AS avg_concurrent_users,
       count(*)::INTEGER                          AS event_count,
       max(last_minute)                           AS last_sale_at
FROM artist_sale_peaks
GROUP BY artist_name;
