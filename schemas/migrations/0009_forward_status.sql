-- What the forward role knows of each instruction version's credentials,
-- per platform: the relay writes a row when it changes — the credentials
-- were refused ("Google credentials expired at …; send new credentials",
-- the destination's work is held) or work again (status ''). The API shows
-- the latest row (largest seq) of the campaign's active version as the
-- instruction's status; a new version starts without one.
CREATE TABLE IF NOT EXISTS forward_status (
    at                  DateTime,
    seq                 UInt64,
    client_id           String,
    campaign_id         String,
    platform            String,
    instruction_version UInt32,
    status              String
) ENGINE = ReplacingMergeTree(seq)
ORDER BY (client_id, campaign_id, platform, instruction_version);
