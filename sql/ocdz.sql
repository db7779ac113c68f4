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

-- Waiting for the card (ocdz_card_wait): a card stored or an order
-- become final wakes the requests that wait for it, in every worker of
-- every host, through NOTIFY ocdz_card with the top-up id alone as
-- payload (sent at commit). Without this trigger waiting still works:
-- the module then looks again every ocdz_card_wait_recheck.
CREATE OR REPLACE FUNCTION ocdz.notify_card() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ocdz_card', NEW.topup_id);
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS ocdz_notify_card ON ocdz.orders;
CREATE TRIGGER ocdz_notify_card
    AFTER UPDATE OF status, card_enc ON ocdz.orders
    FOR EACH ROW
    WHEN (NEW.status IN ('FULFILLED', 'REFUNDED', 'ERROR')
          AND (NEW.status IS DISTINCT FROM OLD.status
               OR NEW.card_enc IS DISTINCT FROM OLD.card_enc))
    EXECUTE FUNCTION ocdz.notify_card();

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

-- ---------------------------------------------------------------------
-- Version 2: delivery
--
-- Email, SMS and the signed webhook to the storefront, sent by the
-- module from a durable outbox. Applied over a version-1 database in
-- place (nginx may keep running): columns are added, never rewritten,
-- and orders already final when the upgrade runs queue nothing.
-- ---------------------------------------------------------------------

-- Storefront-owned: where and how the customer wants the card. NULL
-- channels: nginx's ocdz_delivery_channels (email and SMS by default;
-- rows are queued for both, the sender skips a channel left out), each
-- sent where an address is given.
ALTER TABLE ocdz.orders
    ADD COLUMN IF NOT EXISTS email text
        CHECK (email IS NULL
               OR (length(email) BETWEEN 3 AND 254
                   AND email ~ '^[^@[:space:]<>",]+@[^@[:space:]<>",]+$')),
    ADD COLUMN IF NOT EXISTS phone text
        CHECK (phone IS NULL OR phone ~ '^\+?[0-9]{6,20}$'),
    ADD COLUMN IF NOT EXISTS lang text
        CHECK (lang IS NULL OR lang IN ('en', 'fr', 'ar')),
    ADD COLUMN IF NOT EXISTS channels text[]
        CHECK (channels IS NULL OR channels <@ ARRAY['email', 'sms']);

-- One row per (order, channel, event): what is to be sent, never the
-- card code (the sender decrypts ocdz.orders.card_enc when it sends).
-- channel webhook: event order.fulfilled, order.refunded, order.error,
-- or delivery.sent / delivery.failed with subject the email or sms row
-- it reports; channel email or sms: event card.
CREATE TABLE IF NOT EXISTS ocdz.outbox (
    id              bigserial PRIMARY KEY,
    topup_id        text NOT NULL
                    REFERENCES ocdz.orders (topup_id) ON DELETE CASCADE,
    channel         text NOT NULL
                    CHECK (channel IN ('webhook', 'email', 'sms')),
    event           text NOT NULL
                    CHECK (event IN ('card', 'order.fulfilled',
                        'order.refunded', 'order.error', 'delivery.sent',
                        'delivery.failed')),
    subject         text NOT NULL DEFAULT ''
                    CHECK (subject IN ('', 'email', 'sms')),
    state           text NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'sending', 'sent',
                        'failed', 'skipped')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    lease_owner     text,           -- host and pid, for the sysadmin
    lease_token     text,           -- on every write of the sender
    lease_until     timestamptz,
    last_error      text,           -- a reason, never a secret
    message_id      text,           -- the provider's
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (topup_id, channel, event, subject)
);

-- what the sender scans: rows not yet in a final state
CREATE INDEX IF NOT EXISTS outbox_due_idx ON ocdz.outbox (next_attempt_at)
    WHERE state IN ('pending', 'sending');

-- An order reaching a final state queues its deliveries in the same
-- transaction that stores it. Definer's rights: the module's role
-- cannot insert into the outbox itself.
CREATE OR REPLACE FUNCTION ocdz.orders_queue_delivery()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ch text;
BEGIN
    IF NEW.status NOT IN ('FULFILLED', 'REFUNDED', 'ERROR')
       OR (TG_OP = 'UPDATE' AND OLD.status = NEW.status)
    THEN
        RETURN NULL;
    END IF;

    INSERT INTO ocdz.outbox (topup_id, channel, event)
    VALUES (NEW.topup_id, 'webhook', 'order.' || lower(NEW.status))
    ON CONFLICT DO NOTHING;

    IF NEW.status = 'FULFILLED' THEN
        FOREACH ch IN ARRAY ARRAY['email', 'sms'] LOOP
            IF NEW.channels IS NULL OR ch = ANY (NEW.channels) THEN
                INSERT INTO ocdz.outbox (topup_id, channel, event)
                VALUES (NEW.topup_id, ch, 'card')
                ON CONFLICT DO NOTHING;
            ELSE
                INSERT INTO ocdz.outbox (topup_id, channel, event, state,
                                         last_error)
                VALUES (NEW.topup_id, ch, 'card', 'skipped',
                        'not among the order''s channels')
                ON CONFLICT DO NOTHING;
            END IF;
        END LOOP;
    END IF;

    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS orders_queue_delivery ON ocdz.orders;
CREATE TRIGGER orders_queue_delivery
    AFTER INSERT OR UPDATE OF status ON ocdz.orders
    FOR EACH ROW EXECUTE FUNCTION ocdz.orders_queue_delivery();

-- An email or SMS sent or failed for good: the storefront hears of it;
-- a card sent is audited (CARD_DELIVERED with the method, never the
-- code) and marks the order delivered.
CREATE OR REPLACE FUNCTION ocdz.outbox_delivery_done()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.channel NOT IN ('email', 'sms')
       OR NEW.state NOT IN ('sent', 'failed')
       OR OLD.state = NEW.state
    THEN
        RETURN NULL;
    END IF;

    INSERT INTO ocdz.outbox (topup_id, channel, event, subject)
    VALUES (NEW.topup_id, 'webhook', 'delivery.' || NEW.state, NEW.channel)
    ON CONFLICT DO NOTHING;

    IF NEW.state = 'sent' THEN
        INSERT INTO ocdz.audit (event, topup_id, user_id, method, detail)
        SELECT 'CARD_DELIVERED', o.topup_id, o.user_id, NEW.channel,
               'outbox ' || NEW.id
        FROM ocdz.orders o WHERE o.topup_id = NEW.topup_id;

        UPDATE ocdz.orders SET delivered_at = now()
        WHERE topup_id = NEW.topup_id AND delivered_at IS NULL;
    END IF;

    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS outbox_delivery_done ON ocdz.outbox;
CREATE TRIGGER outbox_delivery_done
    AFTER UPDATE OF state ON ocdz.outbox
    FOR EACH ROW EXECUTE FUNCTION ocdz.outbox_delivery_done();

REVOKE ALL ON FUNCTION ocdz.orders_queue_delivery() FROM PUBLIC;
REVOKE ALL ON FUNCTION ocdz.outbox_delivery_done() FROM PUBLIC;

-- The sender leases rows and writes their outcome; it never inserts.
GRANT SELECT ON ocdz.outbox TO ocdz_module;
GRANT UPDATE (state, attempts, next_attempt_at, lease_owner, lease_token,
              lease_until, last_error, message_id, sent_at, updated_at)
    ON ocdz.outbox TO ocdz_module;

INSERT INTO ocdz.schema_version (version)
SELECT 2 WHERE NOT EXISTS (SELECT 1 FROM ocdz.schema_version
                           WHERE version >= 2);

COMMIT;
