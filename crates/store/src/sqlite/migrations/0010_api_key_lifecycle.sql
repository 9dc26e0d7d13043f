-- Keys get a name, a short clear-text prefix to tell them apart in lists (never enough to
-- guess the key), an optional expiry and a coarse last use (written at most once a minute per
-- key and instance, never on every request). Keys from before are named after their scope.
ALTER TABLE api_keys ADD COLUMN name TEXT NOT NULL DEFAULT '';
ALTER TABLE api_keys ADD COLUMN prefix TEXT NOT NULL DEFAULT '';
ALTER TABLE api_keys ADD COLUMN expires_at INTEGER;
ALTER TABLE api_keys ADD COLUMN last_used_at INTEGER;
UPDATE api_keys SET name = scope || ' key' WHERE name = '';
