-- Pulling from devices (issue 5): what Outpost learnt of a device it pulls from.
ALTER TABLE product_instances
    -- SHA-256 of the device's TLS certificate (or SSH host key), recorded on first contact and
    -- required to match afterwards: devices carry self-signed certificates, so trust on first
    -- use is what can be checked.
    ADD COLUMN peer_fingerprint text,
    ADD COLUMN peer_fingerprint_at timestamptz,
    ADD COLUMN last_pull_at timestamptz;
