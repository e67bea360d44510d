ALTER TABLE local_accounts DROP COLUMN registration_request_nonce;
DROP INDEX rum_reports_account_pi;
