-- A device whose REST or RESTCONF server listens on plain HTTP (PROTOCOL.md 4.1: "HTTPS (or
-- HTTP)"). Off unless an admin says so for that device: over HTTP the credentials travel in clear.
ALTER TABLE product_instances ADD COLUMN plain_http boolean NOT NULL DEFAULT false;
