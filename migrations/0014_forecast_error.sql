-- Each finished sale's forecast error beside its forecast and actual peak: (actual peak − forecast)
-- / forecast in percent, rounded half away from zero, as the TicketEvent's status shows it
-- (`forecastErrorPercent`). NULL until the peak is known, or for a forecast of no users. Stored and
-- computed here, so a query over an artist's sales needs no formula of its own.
ALTER TABLE sale_forecasts ADD COLUMN error_percent INTEGER GENERATED ALWAYS AS (
    CASE WHEN forecast_users > 0 AND actual_peak_users IS NOT NULL
         THEN round((actual_peak_users - forecast_users) * 100.0 / forecast_users)::INTEGER
    END
) STORED;
