ALTER TABLE product_instances DROP COLUMN plain_http;
