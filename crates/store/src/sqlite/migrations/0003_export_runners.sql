-- Version 3: the lease of the process generating a pending export (`runner` until `run_until`,
-- Unix ms), so that of several processes over one database one generates each export, and
-- another takes over if it dies.
ALTER TABLE exports ADD COLUMN runner TEXT;
ALTER TABLE exports ADD COLUMN run_until INTEGER;
