-- Outpost schema v1. Every tenant-owned table carries account_id (the local account), and
-- child tables reference their parent through (account_id, id) so a row can never point at
-- another tenant's data; the schema can later be distributed by account_id without redesign.

-- One row: switches an operator changes at run time, and secrets generated on first start.
CREATE TABLE system_settings (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    validate_device boolean NOT NULL DEFAULT false,
    jwt_secret text,
    instance_private_key_pem text,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO system_settings (id) VALUES (true);

CREATE TABLE users (
    id uuid PRIMARY KEY,
    username text NOT NULL UNIQUE,
    password_hash text NOT NULL,
    role text NOT NULL CHECK (role IN ('system_admin', 'system_operator', 'system_user')),
    disabled boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- A tenant. Rolls up to one Smart Account / Virtual Account pair in CSSM.
CREATE TABLE local_accounts (
    id uuid PRIMARY KEY,
    name text NOT NULL UNIQUE,
    smart_account text NOT NULL,
    virtual_account text NOT NULL,
    email text NOT NULL DEFAULT '',
    status text NOT NULL CHECK (status IN ('requested', 'approved', 'active', 'inactive')),
    status_reason text,
    time_zone text NOT NULL DEFAULT 'UTC',
    cssm_registration_id text,
    cssm_client_id text,
    cssm_client_secret text,
    cssm_smart_account_id text,
    cssm_virtual_account_id text,
    registered_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- A sub-tenant; number 1 is the default. tenant_id is the last segment of the transport URL.
CREATE TABLE local_virtual_accounts (
    id uuid PRIMARY KEY,
    account_id uuid NOT NULL REFERENCES local_accounts (id) ON DELETE CASCADE,
    number integer NOT NULL CHECK (number >= 1),
    name text NOT NULL,
    tenant_id text NOT NULL UNIQUE,
    -- SA/VA this LVA's usage goes to; NULL: the local account's pair.
    smart_account text,
    virtual_account text,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (account_id, number),
    UNIQUE (account_id, id)
);

-- A device (or the active of an HA set), identified by UDI within its local account.
CREATE TABLE product_instances (
    id uuid PRIMARY KEY,
    account_id uuid NOT NULL REFERENCES local_accounts (id) ON DELETE CASCADE,
    lva_id uuid NOT NULL,
    udi_pid text NOT NULL,
    udi_serial_number text NOT NULL,
    -- The full sudi object, optional keys included, as the device last sent it.
    sudi jsonb NOT NULL,
    product_instance_identifier text,
    hostname text,
    software_version text,
    software_tag text,
    connect_method text NOT NULL DEFAULT 'push'
        CHECK (connect_method IN ('push', 'rest', 'restconf', 'netconf')),
    last_contact_at timestamptz,
    source_address text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (account_id, lva_id) REFERENCES local_virtual_accounts (account_id, id),
    UNIQUE (account_id, udi_pid, udi_serial_number),
    UNIQUE (account_id, id)
);
CREATE INDEX product_instances_lva ON product_instances (account_id, lva_id);

-- Members of a PI's High Availability set, as last reported in ha_udi.
CREATE TABLE pi_ha_members (
    account_id uuid NOT NULL,
    pi_id uuid NOT NULL,
    role text NOT NULL CHECK (role IN ('Active', 'Standby', 'Member')),
    udi_pid text NOT NULL,
    udi_serial_number text NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (pi_id, udi_pid, udi_serial_number),
    FOREIGN KEY (account_id, pi_id) REFERENCES product_instances (account_id, id) ON DELETE CASCADE
);

-- One reportusage call to CSSM. Written before the call ('sending') so a crash in between
-- resends the same batch instead of losing it; 'polling' once CSSM gave a poll id.
CREATE TABLE cssm_uploads (
    id uuid PRIMARY KEY,
    account_id uuid NOT NULL REFERENCES local_accounts (id) ON DELETE CASCADE,
    smart_account text NOT NULL,
    virtual_account text NOT NULL,
    nonce text NOT NULL,
    state text NOT NULL CHECK (state IN ('sending', 'polling', 'complete')),
    poll_id text,
    report_count integer NOT NULL,
    duplicate_count integer NOT NULL DEFAULT 0,
    bytes bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL,
    sent_at timestamptz,
    completed_at timestamptz,
    UNIQUE (account_id, id)
);
CREATE INDEX cssm_uploads_open ON cssm_uploads (account_id, created_at) WHERE state <> 'complete';

-- A signed ACK file from CSSM, relayed unchanged to its device.
CREATE TABLE acks (
    id uuid PRIMARY KEY,
    account_id uuid NOT NULL,
    pi_id uuid NOT NULL,
    smart_license text NOT NULL,
    sha256 text NOT NULL,
    acked_report_ids bigint[] NOT NULL,
    has_policy boolean NOT NULL,
    source text NOT NULL CHECK (source IN ('cssm_sync', 'file_import')),
    upload_id uuid REFERENCES cssm_uploads (id) ON DELETE SET NULL,
    received_at timestamptz NOT NULL,
    delivered_at timestamptz,
    FOREIGN KEY (account_id, pi_id) REFERENCES product_instances (account_id, id) ON DELETE CASCADE,
    UNIQUE (pi_id, sha256)
);
CREATE INDEX acks_undelivered ON acks (pi_id) WHERE delivered_at IS NULL;

-- A RUM report. payload is the exact signed string; (pi_id, report_id) makes storage idempotent.
CREATE TABLE rum_reports (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id uuid NOT NULL,
    pi_id uuid NOT NULL,
    report_id bigint NOT NULL,
    payload text NOT NULL,
    signature jsonb NOT NULL,
    header jsonb,
    entitlement_tag text,
    telemetry boolean NOT NULL,
    source text NOT NULL CHECK (source IN ('push', 'push_xml', 'pull', 'file')),
    received_at timestamptz NOT NULL,
    upload_id uuid REFERENCES cssm_uploads (id) ON DELETE SET NULL,
    uploaded_at timestamptz,
    exported_at timestamptz,
    ack_id uuid REFERENCES acks (id) ON DELETE SET NULL,
    acked_at timestamptz,
    FOREIGN KEY (account_id, pi_id) REFERENCES product_instances (account_id, id) ON DELETE CASCADE,
    UNIQUE (pi_id, report_id)
);
CREATE INDEX rum_reports_unsent ON rum_reports (account_id, id) WHERE upload_id IS NULL;
CREATE INDEX rum_reports_upload ON rum_reports (upload_id) WHERE upload_id IS NOT NULL;

-- The poll id handed to a device with OK_POLL, and the reports it covers.
CREATE TABLE device_polls (
    id uuid PRIMARY KEY,
    account_id uuid NOT NULL,
    pi_id uuid NOT NULL,
    report_ids bigint[] NOT NULL,
    created_at timestamptz NOT NULL,
    FOREIGN KEY (account_id, pi_id) REFERENCES product_instances (account_id, id) ON DELETE CASCADE
);
CREATE INDEX device_polls_pi ON device_polls (pi_id);

-- Current count per PI and entitlement: the measurement with the latest end time wins.
CREATE TABLE entitlement_usage (
    account_id uuid NOT NULL,
    pi_id uuid NOT NULL,
    entitlement_tag text NOT NULL,
    count bigint NOT NULL,
    measured_until timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (pi_id, entitlement_tag),
    FOREIGN KEY (account_id, pi_id) REFERENCES product_instances (account_id, id) ON DELETE CASCADE
);

-- Purchased quantities per LVA, synced down from CSSM.
CREATE TABLE licenses (
    account_id uuid NOT NULL,
    lva_id uuid NOT NULL,
    entitlement_tag text NOT NULL,
    name text NOT NULL,
    quantity bigint NOT NULL CHECK (quantity >= 0),
    enforcement text NOT NULL CHECK (enforcement IN ('unenforced', 'enforced', 'export_controlled')),
    term text NOT NULL CHECK (term IN ('perpetual', 'subscription')),
    end_date date,
    synced_at timestamptz NOT NULL,
    PRIMARY KEY (lva_id, entitlement_tag),
    FOREIGN KEY (account_id, lva_id) REFERENCES local_virtual_accounts (account_id, id) ON DELETE CASCADE
);

-- Durable jobs. Workers claim with FOR UPDATE SKIP LOCKED and keep a heartbeat; a job whose
-- heartbeat is older than the lease is taken over. At most one queued job per dedup_key.
CREATE TABLE jobs (
    id uuid PRIMARY KEY,
    kind text NOT NULL,
    account_id uuid REFERENCES local_accounts (id) ON DELETE CASCADE,
    payload jsonb NOT NULL,
    dedup_key text,
    state text NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    attempts integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL CHECK (max_attempts >= 1),
    run_at timestamptz NOT NULL,
    locked_by text,
    heartbeat_at timestamptz,
    progress jsonb,
    result jsonb,
    last_error text,
    created_at timestamptz NOT NULL,
    started_at timestamptz,
    finished_at timestamptz
);
CREATE UNIQUE INDEX jobs_dedup ON jobs (dedup_key) WHERE state = 'queued';
CREATE INDEX jobs_runnable ON jobs (run_at) WHERE state = 'queued';
CREATE INDEX jobs_running ON jobs (heartbeat_at) WHERE state = 'running';
CREATE INDEX jobs_account ON jobs (account_id, created_at DESC);

-- "Every N days at HH:MM" in the account's time zone; the leader enqueues when next_run_at passes.
CREATE TABLE schedules (
    account_id uuid NOT NULL REFERENCES local_accounts (id) ON DELETE CASCADE,
    kind text NOT NULL CHECK (kind IN ('cssm_sync', 'device_pull')),
    enabled boolean NOT NULL,
    every_days integer NOT NULL CHECK (every_days BETWEEN 1 AND 365),
    hour integer NOT NULL CHECK (hour BETWEEN 0 AND 23),
    minute integer NOT NULL CHECK (minute BETWEEN 0 AND 59),
    time_zone text NOT NULL,
    next_run_at timestamptz NOT NULL,
    last_enqueued_at timestamptz,
    PRIMARY KEY (account_id, kind)
);
CREATE INDEX schedules_due ON schedules (next_run_at) WHERE enabled;

-- The synchronisation ledger: one row per sync with CSSM, online or by file.
CREATE TABLE sync_runs (
    id uuid PRIMARY KEY,
    account_id uuid NOT NULL REFERENCES local_accounts (id) ON DELETE CASCADE,
    job_id uuid,
    channel text NOT NULL CHECK (channel IN ('online', 'file')),
    direction text NOT NULL CHECK (direction IN ('outbound', 'inbound', 'both')),
    state text NOT NULL CHECK (state IN ('running', 'succeeded', 'pending', 'failed', 'interrupted')),
    started_at timestamptz NOT NULL,
    finished_at timestamptz,
    duration_ms bigint,
    reports_sent integer NOT NULL DEFAULT 0,
    reports_duplicate integer NOT NULL DEFAULT 0,
    acks_received integer NOT NULL DEFAULT 0,
    reports_acked integer NOT NULL DEFAULT 0,
    licenses_synced integer NOT NULL DEFAULT 0,
    bytes_sent bigint NOT NULL DEFAULT 0,
    bytes_received bigint NOT NULL DEFAULT 0,
    sha256 text,
    file_name text,
    message text
);
CREATE INDEX sync_runs_account ON sync_runs (account_id, started_at DESC);

-- Status lines per PI (pi_id set) or account (pi_id NULL); at most one open per kind.
CREATE TABLE alerts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id uuid NOT NULL REFERENCES local_accounts (id) ON DELETE CASCADE,
    pi_id uuid,
    kind text NOT NULL,
    severity text NOT NULL CHECK (severity IN ('info', 'warning', 'error')),
    message text NOT NULL,
    raised_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    cleared_at timestamptz,
    FOREIGN KEY (account_id, pi_id) REFERENCES product_instances (account_id, id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX alerts_open ON alerts (account_id, pi_id, kind) NULLS NOT DISTINCT
    WHERE cleared_at IS NULL;

-- The audit trail. No foreign keys: it must outlive what it describes.
CREATE TABLE events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id uuid,
    pi_id uuid,
    actor text NOT NULL,
    action text NOT NULL,
    result text NOT NULL CHECK (result IN ('ok', 'rejected', 'failed')),
    detail jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL
);
CREATE INDEX events_account ON events (account_id, created_at DESC);
