-- ngx_http_ocdz_module schema. Idempotent: run it again to upgrade.
--
--   psql -v ON_ERROR_STOP=1 -f sql/ocdz.sql DBNAME
--
-- The storefront inserts one row into ocdz.orders when OneClickDz accepts
-- a top-up (POST /v3/internet/send answered with a topupId); the module
-- does the rest: it polls the order, stores the card encrypted, and
-- reveals it to the order's owner.

BEGIN;

CREATE SCHEMA IF NOT EXISTS ocdz;

CREATE TABLE IF NOT EXISTS ocdz.schema_version (
    version     integer NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per top-up. Columns above the marker belong to the storefront,
-- those below it to the module.
CREATE TABLE IF NOT EXISTS ocdz.orders (
    topup_id        text PRIMARY KEY
                    CHECK (topup_id ~ '^[0-9a-f]{24}$'),
    user_id         text NOT NULL CHECK (length(user_id) BETWEEN 1 AND 128),
    type            text NOT NULL CHECK (type IN ('ADSL', '4G')),
    number          text NOT NULL CHECK (length(number) <= 32),
    value           integer NOT NULL CHECK (value > 0),
    ref             text,
    created_at      timestamptz NOT NULL DEFAULT now(),

    -- module-owned
    status          text NOT NULL DEFAULT 'PENDING'
                    CHECK (status IN ('PENDING', 'HANDLING', 'QUEUED',
                        'UNKNOWN_ERROR', 'FULFILLED', 'REFUNDED', 'ERROR')),
    card_enc        text,           -- encrypted card, see README
    num_trans       text,
    date_traitement text,
    refund_message  text,
    fulfilled_at    timestamptz,
    delivered_at    timestamptz,    -- first reveal to the customer
    next_check_at   timestamptz NOT NULL DEFAULT now(),
    attempts        integer NOT NULL DEFAULT 0,
    not_found_count integer NOT NULL DEFAULT 0,
    last_checked_at timestamptz,
    last_error      text,
    lease_token     text,
    lease_until     timestamptz
);

CREATE INDEX IF NOT EXISTS orders_user_idx ON ocdz.orders (user_id);

-- what the poller scans: orders not yet in a final state
CREATE INDEX IF NOT EXISTS orders_due_idx ON ocdz.orders (next_check_at)
    WHERE status IN ('PENDING', 'HANDLING', 'QUEUED', 'UNKNOWN_ERROR');

-- Default session store: SHA-256 of the session token, never the token.
CREATE TABLE IF NOT EXISTS ocdz.sessions (
    token_hash  bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    user_id     text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);

CREATE INDEX IF NOT EXISTS sessions_user_idx ON ocdz.sessions (user_id);

-- Every release of a card, every authenticated failed attempt, every card
-- the poller stored. Never a card code.
CREATE TABLE IF NOT EXISTS ocdz.audit (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    event       text NOT NULL,
    topup_id    text,
    user_id     text,
    method      text,
    client_ip   text,
    user_agent  text,
    detail      text
);

CREATE INDEX IF NOT EXISTS audit_topup_idx ON ocdz.audit (topup_id);

-- Shared by every worker of every host: a pause of all upstream checks
-- (429, 403, a wrong base URL).
CREATE TABLE IF NOT EXISTS ocdz.poller_state (
    id            integer PRIMARY KEY CHECK (id = 1),
    paused_until  timestamptz,
    pause_reason  text,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

INSERT INTO ocdz.poller_state (id) VALUES (1) ON CONFLICT DO NOTHING;

INSERT INTO ocdz.schema_version (version)
SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM ocdz.schema_version
                           WHERE version >= 1);

-- The module's role: reads sessions and orders, updates only its own
-- order columns, appends to the audit log. Give it LOGIN and a password
-- (ALTER ROLE ocdz_module LOGIN PASSWORD ...) or map it in pg_hba.conf.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ocdz_module') THEN
        CREATE ROLE ocdz_module LOGIN;
    END IF;
END
$$;

GRANT USAGE ON SCHEMA ocdz TO ocdz_module;
GRANT SELECT ON ocdz.schema_version, ocdz.sessions, ocdz.orders
    TO ocdz_module;
GRANT UPDATE (status, card_enc, num_trans, date_traitement, refund_message,
              fulfilled_at, delivered_at, next_check_at, attempts,
              not_found_count, last_checked_at, last_error, lease_token,
              lease_until)
    ON ocdz.orders TO ocdz_module;
GRANT INSERT ON ocdz.audit TO ocdz_module;
GRANT USAGE ON SEQUENCE ocdz.audit_id_seq TO ocdz_module;
GRANT SELECT, UPDATE ON ocdz.poller_state TO ocdz_module;

COMMIT;
