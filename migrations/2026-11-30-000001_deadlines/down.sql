DROP INDEX rum_reports_unacked;
ALTER TABLE local_accounts DROP COLUMN reporting_interval_days;
ALTER TABLE product_instances
    DROP COLUMN policy,
    DROP COLUMN last_report_at,
    DROP COLUMN usage_change_tags,
    DROP COLUMN usage_changed_at,
    DROP COLUMN first_consumed_at;
