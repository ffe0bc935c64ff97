-- The operator's own database role: it reads the sale history (traffic_logs and the artist_sale_peaks
-- view over it) and writes sale_forecasts, and nothing else of the service's data (users, seats,
-- payments). NOLOGIN: a login is made a member of it (README: "The operator's database role").
-- Created only when the migrating user may create roles (on a managed database it often may not:
-- then nothing happens, and the operator keeps using DATABASE_URL); roles are per server, so a
-- second database migrated on the same server reuses it and only gets the grants.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tiketi_operator') THEN
        BEGIN
            CREATE ROLE tiketi_operator NOLOGIN;
        EXCEPTION
            -- another database of this server created it at the same moment
            WHEN duplicate_object OR unique_violation THEN NULL;
        END;
    END IF;
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO tiketi_operator', current_database());
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO tiketi_operator', current_schema());
    GRANT SELECT ON traffic_logs, artist_sale_peaks TO tiketi_operator;
    -- INSERT … ON CONFLICT DO UPDATE: SELECT for the conflict target, UPDATE for the set columns
    GRANT SELECT, INSERT, UPDATE ON sale_forecasts TO tiketi_operator;
EXCEPTION
    WHEN insufficient_privilege THEN
        RAISE NOTICE 'role tiketi_operator not set up (%): the operator uses DATABASE_URL', SQLERRM;
END
$$;
