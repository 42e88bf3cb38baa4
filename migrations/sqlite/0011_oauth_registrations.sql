-- Client registrations the hub made itself (same shape on sqlite/ and postgres/): where it
-- registered (a Mastodon instance's /api/v1/apps, or an RFC 7591 registration endpoint) and
-- the redirect URI it registered, so a hub whose public URL changed registers again.
ALTER TABLE oauth_clients ADD COLUMN registration_url TEXT;
ALTER TABLE oauth_clients ADD COLUMN registered_redirect TEXT;
