-- Who did what to whose data: erasures, retention purges, client changes.
-- It holds ids and counts, never visitor data.
CREATE TABLE IF NOT EXISTS audit_log (
    at          DateTime,
    actor       String,
    action      String,
    client_id   String,
    campaign_id String,
    detail      String
) ENGINE = MergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (client_id, at);
