-- The items in conflict, found without reading the rest (same on sqlite/ and postgres/):
-- what the web app's conflicts page and its count in the navigation read.
CREATE INDEX items_in_conflict ON items (collection_id) WHERE conflicts > 0;
