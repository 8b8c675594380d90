-- Partner shares: a client's instruction to let a third party (a job board,
-- an agency) read irreversibly anonymised weekly aggregates of one campaign
-- (see README, "Partners"). Like clients and campaigns, rows are never
-- updated in place: a revocation inserts a new row with a higher version,
-- and readers take the latest version per share_id (argMax), which works the
-- same on ClickHouse 18.16 and current releases. token_hash is the SHA-256
-- of the partner token; the token itself is never stored. revoked_at is
-- meaningful only when revoked = 1.
CREATE TABLE IF NOT EXISTS partner_shares (
    share_id      String,
    client_id     String,
    campaign_id   String,
    name          String,
    token_hash    String,
    min_visitors  UInt32,
    created_at    DateTime,
    created_by    String,
    revoked       UInt8,
    revoked_at    DateTime,
    revoked_by    String,
    version       UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY (client_id, campaign_id, share_id);
