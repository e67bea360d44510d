ALTER TABLE device_polls DROP COLUMN authorization_request;
DROP FUNCTION authorization_held(uuid, text);
DROP TABLE authorizations;
DROP INDEX product_instances_ha_members;
ALTER TABLE product_instances
    DROP COLUMN ha_active_pi,
    DROP COLUMN trust_forwarded_at,
    DROP COLUMN trust_requests;
DROP TABLE pi_files;
DROP TABLE webhook_attempts;
DROP TABLE webhook_deliveries;
DROP TABLE webhooks;
