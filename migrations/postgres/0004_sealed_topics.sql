-- A hosted topic's URL carries a feed key: the `topic` column keeps it with the key replaced
-- by the key's hash (what lookups match), and `topic_sealed` the whole URL, sealed like the
-- secrets, for the verifications, denials and notifications that must name it.
ALTER TABLE websub_subscriptions ADD COLUMN topic_sealed TEXT;
ALTER TABLE websub_requests ADD COLUMN topic_sealed TEXT;
