DROP TRIGGER alerts_sync_pi_flag ON alerts;
DROP FUNCTION product_instances_sync_alert_flag();
DROP INDEX product_instances_alerted;
ALTER TABLE product_instances DROP COLUMN has_open_alert;
DROP INDEX product_instances_by_method;
DROP INDEX product_instances_search;
DROP EXTENSION IF EXISTS pg_trgm;
DROP INDEX product_instances_by_contact;
DROP INDEX product_instances_by_hostname;
DROP INDEX product_instances_by_udi;
DROP INDEX product_instances_host;
DELETE FROM product_instances WHERE udi_pid IS NULL;
ALTER TABLE product_instances
    DROP CONSTRAINT product_instances_mapping_whole,
    DROP CONSTRAINT product_instances_identified,
    DROP CONSTRAINT product_instances_udi_whole,
    DROP COLUMN virtual_account,
    DROP COLUMN smart_account,
    DROP COLUMN behind_nat,
    DROP COLUMN credentials,
    DROP COLUMN port,
    DROP COLUMN host,
    ALTER COLUMN sudi DROP DEFAULT,
    ALTER COLUMN udi_serial_number SET NOT NULL,
    ALTER COLUMN udi_pid SET NOT NULL;
DROP TABLE account_former_names;
ALTER TABLE system_settings DROP COLUMN nat_support;
ALTER TABLE local_accounts
    DROP COLUMN nat_support,
    DROP COLUMN validate_device,
    DROP COLUMN requested_by,
    DROP COLUMN last_lva_number;
DROP TABLE user_account_roles;
DELETE FROM users WHERE role IS NULL;
ALTER TABLE users ALTER COLUMN role SET NOT NULL;
