-- Version 13: every organization has its log head from its creation.
--
-- A head was made by the first append, inside the appender's transaction, which by then could
-- hold other organizations' heads: creating one there could wait for another instance creating
-- the same head, in no particular order, and so deadlock. An organization is now created with
-- its head, in one statement; this gives the earlier ones theirs.
INSERT INTO log_heads (organization_id, size, frontier)
SELECT o.id, 0, ''::BYTEA FROM organizations o
WHERE NOT EXISTS (SELECT 1 FROM log_heads h WHERE h.organization_id = o.id)
ORDER BY o.id
-- An instance of the previous version still running may make one meanwhile.
ON CONFLICT DO NOTHING;
