-- Forecast against actual, one row per finished sale, written by the operator (its only table).
-- The next forecast reads peaks from traffic_logs; this table tracks forecast error per artist.
CREATE TABLE sale_forecasts (
    id                   BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id             UUID NOT NULL,
    artist_name          VARCHAR(255) NOT NULL,
    ticket_event         VARCHAR(300) NOT NULL,  -- namespace/name of the TicketEvent
    forecast_users       INTEGER NOT NULL CHECK (forecast_users >= 0),
    forecast_replicas    INTEGER NOT NULL CHECK (forecast_replicas >= 0),
    forecast_method      TEXT NOT NULL,
    actual_peak_users    INTEGER CHECK (actual_peak_users >= 0),
    actual_peak_queue    INTEGER CHECK (actual_peak_queue >= 0),
    recorded_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT sale_forecasts_event_key UNIQUE (ticket_event, event_id)
);
CREATE INDEX sale_forecasts_artist_idx ON sale_forecasts (artist_name, recorded_at DESC);
