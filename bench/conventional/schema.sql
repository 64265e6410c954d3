-- The conventional stack's schema: what a team builds instead of slotlock.
-- "Only one event at a time" is the EXCLUDE constraint; btree_gist lets the
-- calendar's equality share the GiST index with the range overlap.
CREATE EXTENSION IF NOT EXISTS btree_gist;

CREATE TABLE IF NOT EXISTS users (
    name       text PRIMARY KEY,
    admin      boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- A token reads slk_<id>.<secret>; only sha256(secret) is stored, as in slotlock.
CREATE TABLE IF NOT EXISTS api_tokens (
    id         text PRIMARY KEY,
    user_name  text NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    hash       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS calendars (
    id       text PRIMARY KEY,
    name     text NOT NULL,
    timezone text NOT NULL DEFAULT 'UTC'
);

CREATE TABLE IF NOT EXISTS bookings (
    id         text PRIMARY KEY,
    calendar   text NOT NULL REFERENCES calendars (id),
    start_at   timestamptz NOT NULL,
    end_at     timestamptz NOT NULL,
    title      text NOT NULL,
    owner      text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK (end_at > start_at),
    CONSTRAINT no_overlap EXCLUDE USING gist (calendar WITH =, tstzrange(start_at, end_at) WITH &&)
);
