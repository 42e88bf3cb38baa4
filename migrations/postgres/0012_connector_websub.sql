-- WebSub for feed connectors (same shape on sqlite/ and postgres/): a feed connector whose
-- feed names a hub subscribes there through a follow of its own (`connector_id` set), which
-- the follow worker subscribes, renews and receives pushes for, writing as the connector's
-- endpoint into its collection; such follows are not listed as the user's follows.
ALTER TABLE follows ADD COLUMN connector_id BIGINT;
CREATE INDEX follows_by_connector ON follows (user_id, connector_id);
