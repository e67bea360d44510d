-- "Export Usage to Cisco" walks an account's reports device by device.
CREATE INDEX rum_reports_account_pi ON rum_reports (account_id, pi_id, id);

-- The nonce of the last offline registration request; its response must echo it.
ALTER TABLE local_accounts ADD COLUMN registration_request_nonce text;
