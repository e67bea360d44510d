-- Tenancy and access: account roles, former account names, per-tenant switches, and the
-- inventory columns an operator manages (host, connect method, credentials, SA/VA mapping).

-- A user has at most one system role, and any number of roles on single local accounts.
ALTER TABLE users ALTER COLUMN role DROP NOT NULL;
CREATE TABLE user_account_roles (
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    account_id uuid NOT NULL REFERENCES local_accounts (id) ON DELETE CASCADE,
    role text NOT NULL CHECK (role IN ('account_admin', 'account_user')),
    PRIMARY KEY (user_id, account_id)
);
CREATE INDEX user_account_roles_account ON user_account_roles (account_id);

-- Who asked for the account (becomes its account admin on approval); per-tenant overrides of
-- the global device switches (NULL: follow the global setting).
-- LVA numbers are never reused within an account: devices may still be configured with a
-- deleted LVA's URL, and must not land in a new one.
ALTER TABLE local_accounts
    ADD COLUMN last_lva_number integer NOT NULL DEFAULT 1,
    ADD COLUMN requested_by uuid REFERENCES users (id) ON DELETE SET NULL,
    ADD COLUMN validate_device boolean,
    ADD COLUMN nat_support boolean;
UPDATE local_accounts a SET last_lva_number = coalesce(
    (SELECT max(number) FROM local_virtual_accounts l WHERE l.account_id = a.id), 1);
ALTER TABLE system_settings ADD COLUMN nat_support boolean NOT NULL DEFAULT false;

-- Names an account had before a rename: devices configured with `<old name>-<n>` keep
-- reporting to LVA n of the renamed account.
CREATE TABLE account_former_names (
    name text PRIMARY KEY,
    account_id uuid NOT NULL REFERENCES local_accounts (id) ON DELETE CASCADE,
    renamed_at timestamptz NOT NULL
);
CREATE INDEX account_former_names_account ON account_former_names (account_id);

-- A PI added for pulling is known by its host until the first pull tells its UDI.
ALTER TABLE product_instances
    ALTER COLUMN udi_pid DROP NOT NULL,
    ALTER COLUMN udi_serial_number DROP NOT NULL,
    ALTER COLUMN sudi SET DEFAULT '{}',
    ADD COLUMN host text,
    ADD COLUMN port integer CHECK (port BETWEEN 1 AND 65535),
    -- Sealed with AES-256-GCM (outpost_core::secrets); never returned by the API.
    ADD COLUMN credentials bytea,
    ADD COLUMN behind_nat boolean NOT NULL DEFAULT false,
    -- Where this PI's usage goes in CSSM when not its LVA's (or account's) pair.
    ADD COLUMN smart_account text,
    ADD COLUMN virtual_account text,
    ADD CONSTRAINT product_instances_udi_whole
        CHECK ((udi_pid IS NULL) = (udi_serial_number IS NULL)),
    ADD CONSTRAINT product_instances_identified
        CHECK (udi_pid IS NOT NULL OR host IS NOT NULL),
    ADD CONSTRAINT product_instances_mapping_whole
        CHECK ((smart_account IS NULL) = (virtual_account IS NULL));
CREATE UNIQUE INDEX product_instances_host
    ON product_instances (account_id, host, coalesce(port, 0)) WHERE host IS NOT NULL;

-- Inventory list orders (keyset pagination: each ends in id so pages never overlap).
CREATE INDEX product_instances_by_udi ON product_instances
    (account_id, coalesce(udi_pid, ''), coalesce(udi_serial_number, ''), id);
CREATE INDEX product_instances_by_hostname ON product_instances
    (account_id, coalesce(hostname, ''), id);
CREATE INDEX product_instances_by_contact ON product_instances
    (account_id, coalesce(last_contact_at, '-infinity'::timestamptz), id);
-- Substring search over UDI, hostname and host.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX product_instances_search ON product_instances USING gin (
    (coalesce(udi_pid, '') || ' ' || coalesce(udi_serial_number, '') || ' ' ||
     coalesce(hostname, '') || ' ' || coalesce(host, '')) gin_trgm_ops);
-- Filters by connect method (and the pull job's selection of devices to pull), in UDI order:
-- methods follow models (routers pulled over NETCONF), so the plain UDI index can walk a long
-- way before it meets the first match.
CREATE INDEX product_instances_by_method ON product_instances
    (account_id, connect_method, coalesce(udi_pid, ''), coalesce(udi_serial_number, ''), id);

-- Whether the PI has an open alert, kept by a trigger on alerts, so "with alerts" lists walk a
-- small partial index instead of probing the alerts of every PI in order.
ALTER TABLE product_instances ADD COLUMN has_open_alert boolean NOT NULL DEFAULT false;
UPDATE product_instances p SET has_open_alert = true
    WHERE EXISTS (SELECT 1 FROM alerts a WHERE a.pi_id = p.id AND a.cleared_at IS NULL);
CREATE INDEX product_instances_alerted ON product_instances
    (account_id, coalesce(udi_pid, ''), coalesce(udi_serial_number, ''), id) WHERE has_open_alert;
CREATE FUNCTION product_instances_sync_alert_flag() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    target uuid := CASE WHEN TG_OP = 'DELETE' THEN OLD.pi_id ELSE NEW.pi_id END;
BEGIN
    IF target IS NOT NULL THEN
        -- Lock the PI first: two transactions changing different alerts of one PI would
        -- otherwise each decide from a snapshot missing the other's alert.
        PERFORM 1 FROM product_instances WHERE id = target FOR UPDATE;
        UPDATE product_instances p
           SET has_open_alert = EXISTS (SELECT 1 FROM alerts a
                                        WHERE a.pi_id = target AND a.cleared_at IS NULL)
         WHERE p.id = target
           AND p.has_open_alert IS DISTINCT FROM EXISTS (SELECT 1 FROM alerts a
                                                         WHERE a.pi_id = target AND a.cleared_at IS NULL);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER alerts_sync_pi_flag AFTER INSERT OR DELETE OR UPDATE OF cleared_at, pi_id ON alerts
    FOR EACH ROW EXECUTE FUNCTION product_instances_sync_alert_flag();
