-- The portal link's `success_url` (WorkOS's): where the admin is sent once they finished what
-- the link was for (a log stream set up). Kept with the link and then with its session.
ALTER TABLE portal_links ADD COLUMN success_url TEXT;
ALTER TABLE portal_sessions ADD COLUMN success_url TEXT;
