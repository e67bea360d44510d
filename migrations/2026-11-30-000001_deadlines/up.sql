-- Reporting deadlines (issue 6): what the deadline rules need of each PI's history, a policy
-- CSSM sent for it, and a tenant's narrower reporting interval.
ALTER TABLE product_instances
    ADD COLUMN first_consumed_at timestamptz,
    ADD COLUMN usage_changed_at timestamptz,
    -- Entitlements whose count changed at usage_changed_at.
    ADD COLUMN usage_change_tags text[] NOT NULL DEFAULT '{}',
    ADD COLUMN last_report_at timestamptz,
    -- The policy CSSM sent with the PI's latest ACK that carried one; NULL: Cisco default.
    ADD COLUMN policy jsonb;
ALTER TABLE local_accounts
    ADD COLUMN reporting_interval_days integer CHECK (reporting_interval_days BETWEEN 1 AND 365);
-- The sweep asks for each PI's oldest unacknowledged report; there are few of them.
CREATE INDEX rum_reports_unacked ON rum_reports (account_id, pi_id, received_at) WHERE acked_at IS NULL;
