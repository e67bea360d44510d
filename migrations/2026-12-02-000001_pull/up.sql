-- Pulling from devices (issue 5): what Outpost learnt of a device it pulls from.
ALTER TABLE product_instances
    -- SHA-256 of the device's TLS certificate (or SSH host key), recorded on first contact and
    -- required to match afterwards: devices carry self-signed certificates, so trust on first
    -- use is what can be checked.
    ADD COLUMN peer_fingerprint text,
    ADD COLUMN peer_fingerprint_at timestamptz,
    ADD COLUMN last_pull_at timestamptz;

-- One-time URLs a device pulled over RESTCONF or NETCONF uploads its RUM file to, or reads an
-- ACK from. Only the token's hash is kept; each is single-use, bound to one PI, and expires.
CREATE TABLE pull_drops (
    token_sha256 text PRIMARY KEY,
    account_id uuid NOT NULL REFERENCES local_accounts (id) ON DELETE CASCADE,
    pi_id uuid NOT NULL REFERENCES product_instances (id) ON DELETE CASCADE,
    purpose text NOT NULL CHECK (purpose IN ('upload', 'download')),
    -- What a download serves.
    file text,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at timestamptz,
    -- What an upload brought: reports in the file, and how many were new.
    reports integer,
    reports_new integer,
    CHECK (purpose = 'upload' OR file IS NOT NULL)
);
CREATE INDEX pull_drops_expiry ON pull_drops (expires_at);
