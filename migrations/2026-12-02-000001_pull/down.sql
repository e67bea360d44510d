DROP TABLE pull_drops;
ALTER TABLE product_instances
    DROP COLUMN last_pull_at,
    DROP COLUMN peer_fingerprint_at,
    DROP COLUMN peer_fingerprint;
