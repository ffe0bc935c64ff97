-- TIKETI schema: the nine tables of the original, with TIMESTAMPTZ and the constraints that make the
-- original's defects impossible (expired holds, event deletion blocked by items, negative stock).
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE FUNCTION set_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at = now();
    RETURN NEW;
END;
$$;

-- The wire format of instants: UTC with milliseconds, as JavaScript's Date.toJSON (for JSON built in SQL).
CREATE FUNCTION wire_ts(t TIMESTAMPTZ) RETURNS TEXT LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
$$;

CREATE TABLE users (
    id            UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    email         VARCHAR(255) NOT NULL CONSTRAINT users_email_key UNIQUE,
    password_hash VARCHAR(255) NOT NULL,
    name          VARCHAR(100) NOT NULL,
    phone         VARCHAR(20),
    role          VARCHAR(20)  NOT NULL DEFAULT 'user' CONSTRAINT users_role_check CHECK (role IN ('user', 'admin')),
    created_at    TIMESTAMPTZ  NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ  NOT NULL DEFAULT now()
);

CREATE TABLE seat_layouts (
    id            UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name          VARCHAR(100) NOT NULL CONSTRAINT seat_layouts_name_key UNIQUE,
    description   TEXT,
    total_seats   INTEGER NOT NULL CHECK (total_seats >= 0),
    layout_config JSONB   NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE events (
    id               UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    title            VARCHAR(255) NOT NULL,
    description      TEXT,
    venue            VARCHAR(255) NOT NULL,
    address          TEXT,
    event_date       TIMESTAMPTZ NOT NULL,
    sale_start_date  TIMESTAMPTZ NOT NULL,
    sale_end_date    TIMESTAMPTZ NOT NULL,
    poster_image_url TEXT,
    status           VARCHAR(20) NOT NULL DEFAULT 'upcoming'
                     CONSTRAINT events_status_check CHECK (status IN ('upcoming', 'on_sale', 'sold_out', 'ended', 'cancelled')),
    seat_layout_id   UUID REFERENCES seat_layouts (id) ON DELETE RESTRICT,
    artist_name      VARCHAR(255),
    pre_scaled       BOOLEAN NOT NULL DEFAULT FALSE,
    -- waiting-room threshold: concurrent admitted users before new visitors queue
    queue_threshold  INTEGER NOT NULL DEFAULT 1000 CONSTRAINT events_queue_threshold_check CHECK (queue_threshold > 0),
    created_by       UUID REFERENCES users (id) ON DELETE SET NULL,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT events_sale_window_check CHECK (sale_start_date < sale_end_date)
);

CREATE TABLE ticket_types (
    id                 UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    event_id           UUID NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    name               VARCHAR(100) NOT NULL,
    price              INTEGER NOT NULL CONSTRAINT ticket_types_price_check CHECK (price >= 0),
    total_quantity     INTEGER NOT NULL CONSTRAINT ticket_types_total_check CHECK (total_quantity >= 0),
    available_quantity INTEGER NOT NULL,
    description        TEXT,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- stock can never go below zero nor above what exists: no oversell even if a check is missed
    CONSTRAINT ticket_types_stock_check CHECK (available_quantity BETWEEN 0 AND total_quantity)
);

CREATE TABLE seats (
    id          UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    event_id    UUID NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    section     VARCHAR(50) NOT NULL,
    row_number  INTEGER NOT NULL,
    seat_number INTEGER NOT NULL,
    seat_label  VARCHAR(20) NOT NULL,
    price       INTEGER NOT NULL CHECK (price >= 0),
    status      VARCHAR(20) NOT NULL DEFAULT 'available'
                CONSTRAINT seats_status_check CHECK (status IN ('available', 'reserved', 'locked')),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT seats_position_key UNIQUE (event_id, section, row_number, seat_number)
);

CREATE TABLE reservations (
    id                 UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id            UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    event_id           UUID REFERENCES events (id) ON DELETE SET NULL,
    reservation_number VARCHAR(50) NOT NULL CONSTRAINT reservations_number_key UNIQUE,
    total_amount       INTEGER NOT NULL CHECK (total_amount >= 0),
    -- 'expired' marks a seat hold that timed out before payment (the original had no status for it)
    status             VARCHAR(20) NOT NULL DEFAULT 'pending'
                       CONSTRAINT reservations_status_check CHECK (status IN ('pending', 'confirmed', 'cancelled', 'expired')),
    payment_method     VARCHAR(50)
                       CONSTRAINT reservations_payment_method_check CHECK (payment_method IN ('naver_pay', 'kakao_pay', 'bank_transfer')),
    payment_status     VARCHAR(20) NOT NULL DEFAULT 'pending'
                       CONSTRAINT reservations_payment_status_check CHECK (payment_status IN ('pending', 'completed', 'failed', 'refunded')),
    expires_at         TIMESTAMPTZ,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE reservation_items (
    id             UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    reservation_id UUID NOT NULL REFERENCES reservations (id) ON DELETE CASCADE,
    -- SET NULL: deleting an event (and its ticket types and seats) must not be blocked by history
    ticket_type_id UUID REFERENCES ticket_types (id) ON DELETE SET NULL,
    seat_id        UUID REFERENCES seats (id) ON DELETE SET NULL,
    quantity       INTEGER NOT NULL CHECK (quantity > 0),
    unit_price     INTEGER NOT NULL CHECK (unit_price >= 0),
    subtotal       INTEGER NOT NULL CHECK (subtotal >= 0),
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE keyword_mappings (
    id          UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    korean      VARCHAR(255) NOT NULL,
    english     VARCHAR(255) NOT NULL,
    entity_type VARCHAR(50) NOT NULL DEFAULT 'artist' CHECK (entity_type IN ('artist', 'venue', 'general')),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT keyword_mappings_pair_key UNIQUE (korean, english)
);

CREATE TABLE news (
    id         UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    title      VARCHAR(255) NOT NULL,
    content    TEXT NOT NULL,
    author     VARCHAR(100) NOT NULL,
    author_id  UUID REFERENCES users (id) ON DELETE SET NULL,
    views      INTEGER NOT NULL DEFAULT 0,
    is_pinned  BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TRIGGER users_updated_at BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER seat_layouts_updated_at BEFORE UPDATE ON seat_layouts FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER events_updated_at BEFORE UPDATE ON events FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER ticket_types_updated_at BEFORE UPDATE ON ticket_types FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER seats_updated_at BEFORE UPDATE ON seats FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER reservations_updated_at BEFORE UPDATE ON reservations FOR EACH ROW EXECUTE FUNCTION set_updated_at();
-- news: only edits bump updated_at, not the view counter (the original bumped it on every read)
CREATE TRIGGER news_updated_at BEFORE UPDATE OF title, content, is_pinned ON news FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- hot paths
CREATE INDEX events_sale_start_idx ON events (sale_start_date);
CREATE INDEX events_status_sale_start_idx ON events (status, sale_start_date);
CREATE INDEX events_artist_idx ON events (artist_name);
CREATE INDEX events_seat_layout_idx ON events (seat_layout_id);
CREATE INDEX events_search_idx ON events USING gin (
    (coalesce(title, '') || ' ' || coalesce(artist_name, '') || ' ' || coalesce(venue, '') || ' ' || coalesce(address, '')) gin_trgm_ops);
CREATE INDEX ticket_types_event_idx ON ticket_types (event_id, price DESC);
CREATE INDEX seats_event_status_idx ON seats (event_id, status);
CREATE INDEX reservations_user_created_idx ON reservations (user_id, created_at DESC);
CREATE INDEX reservations_event_idx ON reservations (event_id);
CREATE INDEX reservations_status_created_idx ON reservations (status, created_at DESC);
CREATE INDEX reservations_created_idx ON reservations (created_at DESC);
-- the hold-expiry sweep scans only live holds
CREATE INDEX reservations_hold_expiry_idx ON reservations (expires_at)
    WHERE status = 'pending' AND payment_status = 'pending' AND expires_at IS NOT NULL;
CREATE INDEX reservation_items_reservation_idx ON reservation_items (reservation_id);
CREATE INDEX reservation_items_seat_idx ON reservation_items (seat_id);
CREATE INDEX reservation_items_ticket_type_idx ON reservation_items (ticket_type_id);
CREATE INDEX keyword_mappings_korean_idx ON keyword_mappings USING gin (korean gin_trgm_ops);
CREATE INDEX keyword_mappings_english_idx ON keyword_mappings USING gin (english gin_trgm_ops);
CREATE INDEX news_pinned_created_idx ON news (is_pinned DESC, created_at DESC);
CREATE INDEX news_author_idx ON news (author_id);
