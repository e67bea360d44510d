-- Issue 6, second part: webhooks, policy and trust-code delivery, HA sets and authorization
-- codes (SLAC).

-- HTTPS endpoints an account registers to receive its alerts as signed JSON.
CREATE TABLE webhooks (
    id uuid PRIMARY KEY,
    account_id uuid NOT NULL REFERENCES local_accounts (id) ON DELETE CASCADE,
    url text NOT NULL,
    -- HMAC-SHA256 key of the signature header. Shown once, when the webhook is created.
    secret text NOT NULL,
    -- Alert kinds sent; empty: every kind.
    kinds text[] NOT NULL DEFAULT '{}',
    enabled boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL
);
CREATE INDEX webhooks_by_account ON webhooks (account_id);

-- One event for one webhook; a job delivers it, retrying with backoff.
CREATE TABLE webhook_deliveries (
    id uuid PRIMARY KEY,
    webhook_id uuid NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    account_id uuid NOT NULL REFERENCES local_accounts (id) ON DELETE CASCADE,
    event text NOT NULL,
    body text NOT NULL,
    state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL,
    delivered_at timestamptz
);
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, created_at DESC);

-- The delivery log: every attempt and what the endpoint answered.
CREATE TABLE webhook_attempts (
    delivery_id uuid NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt integer NOT NULL,
    at timestamptz NOT NULL,
    status_code integer,
    error text,
    duration_ms integer NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);

-- Policies and trust codes CSSM issued for a device, handed over with its next answer.
CREATE TABLE pi_files (
    id uuid PRIMARY KEY,
    account_id uuid NOT NULL REFERENCES local_accounts (id) ON DELETE CASCADE,
    pi_id uuid NOT NULL REFERENCES product_instances (id) ON DELETE CASCADE,
    kind text NOT NULL CHECK (kind IN ('policy', 'trust_code')),
    -- The device a trust code is for (the PI itself or a member of its HA set).
    sudi jsonb,
    smart_license text NOT NULL,
    sha256 text NOT NULL,
    -- The ACK that carried it (a result_poll for those reports hands it over again).
    ack_id uuid REFERENCES acks (id) ON DELETE SET NULL,
    received_at timestamptz NOT NULL,
    delivered_at timestamptz,
    -- Trust codes: when the device said it installed the code (its trust_sync).
    installed_at timestamptz,
    UNIQUE (pi_id, kind, sha256)
);
CREATE INDEX pi_files_undelivered ON pi_files (pi_id) WHERE delivered_at IS NULL;

ALTER TABLE product_instances
    -- Trust requests from the device's latest usage report, until CSSM answers them.
    ADD COLUMN trust_requests jsonb,
    ADD COLUMN trust_forwarded_at timestamptz,
    -- Set while the PI is the standby or a member of another PI's HA set: that PI reports for
    -- the set, and this one's usage is not counted.
    ADD COLUMN ha_active_pi uuid REFERENCES product_instances (id) ON DELETE SET NULL;
-- The members of a set, when its active reports or leaves it.
CREATE INDEX product_instances_ha_members ON product_instances (ha_active_pi) WHERE ha_active_pi IS NOT NULL;

-- Authorization codes (SLAC), one per device UDI and entitlement. While requested, issued or
-- confirmed, a code holds `count` of its LVA's licenses of that entitlement.
CREATE TABLE authorizations (
    id uuid PRIMARY KEY,
    account_id uuid NOT NULL REFERENCES local_accounts (id) ON DELETE CASCADE,
    lva_id uuid NOT NULL REFERENCES local_virtual_accounts (id) ON DELETE CASCADE,
    -- The PI that asked (the active of an HA set asks for every member); NULL for imported
    -- codes of devices not seen yet.
    pi_id uuid REFERENCES product_instances (id) ON DELETE SET NULL,
    -- The device request it belongs to (one poll id), NULL for imported codes.
    request_id uuid,
    udi_pid text NOT NULL,
    udi_serial_number text NOT NULL,
    entitlement_tag text NOT NULL,
    count integer NOT NULL CHECK (count > 0),
    state text NOT NULL CHECK (state IN ('requested', 'issued', 'confirmed', 'returned', 'replaced', 'failed')),
    source text NOT NULL CHECK (source IN ('device', 'import')),
    smart_license text,
    confirm_code text,
    return_code text,
    error text,
    -- Set on a held code while a request for the same device and entitlement waits for CSSM:
    -- the pair holds the larger of the two counts, and the old code is replaced once the new
    -- one is issued (or held alone again if CSSM refuses).
    superseded_by uuid,
    -- CSSM's poll id for a request it accepted, so a retried job polls instead of asking again.
    cssm_poll_id text,
    requested_at timestamptz NOT NULL,
    issued_at timestamptz,
    delivered_at timestamptz,
    confirmed_at timestamptz,
    returned_at timestamptz,
    return_forwarded_at timestamptz,
    CHECK (state NOT IN ('issued', 'confirmed') OR smart_license IS NOT NULL)
);
CREATE INDEX authorizations_by_udi ON authorizations (account_id, udi_pid, udi_serial_number);
CREATE INDEX authorizations_by_request ON authorizations (request_id) WHERE request_id IS NOT NULL;
CREATE INDEX authorizations_holding ON authorizations (lva_id, entitlement_tag)
    WHERE state IN ('requested', 'issued', 'confirmed');

-- Licenses of one LVA pool held by authorization codes: requested, issued and confirmed codes
-- hold their count, except that a code superseded by a pending request and that request's new
-- code together hold the larger of their counts. The one definition of "held" for the pool
-- checks, license transfers and the license positions.
CREATE FUNCTION authorization_held(lva uuid, tag text) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT sum(count) FROM authorizations
                      WHERE lva_id = lva AND entitlement_tag = tag
                        AND state IN ('requested', 'issued', 'confirmed')), 0)
         - coalesce((SELECT sum(least(o.count, n.count)) FROM authorizations o
                       JOIN authorizations n
                         ON n.request_id = o.superseded_by AND n.state = 'requested'
                        AND n.lva_id = o.lva_id AND n.entitlement_tag = o.entitlement_tag
                        AND n.udi_pid = o.udi_pid AND n.udi_serial_number = o.udi_serial_number
                      WHERE o.lva_id = lva AND o.entitlement_tag = tag
                        AND o.state IN ('issued', 'confirmed')), 0)::bigint
$$;

-- A device poll id also stands for an authorization request.
ALTER TABLE device_polls ADD COLUMN authorization_request uuid;

-- Trust requests are forwarded now: the old "not forwarded" status lines no longer apply.
UPDATE alerts SET cleared_at = now() WHERE kind = 'trust_request_not_forwarded' AND cleared_at IS NULL;
