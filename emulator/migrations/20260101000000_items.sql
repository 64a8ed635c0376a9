-- The demo service's one table (`emu demo-app`: POST /items, GET /items, GET /items/{id}).
-- IF NOT EXISTS: instances of several demo services may share one database.
CREATE TABLE IF NOT EXISTS items (
    id         BIGSERIAL PRIMARY KEY,
    name       TEXT        NOT NULL,
    value      JSONB       NOT NULL DEFAULT 'null'::jsonb,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
