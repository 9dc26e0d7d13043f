-- Version 15: the instances' channel is keyed from the secrets key they share, not from a
-- secret in the database (which any reader of the database, or of a backup, could take). A
-- database that applied version 14 while it made `cluster_secret` loses the table.
DROP TABLE IF EXISTS cluster_secret;
