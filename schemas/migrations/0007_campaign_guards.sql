-- Per-campaign protection against forged hits (README, "Forged hits"): the
-- page hosts a campaign's browser hits may come from, and the secret of its
-- signed server-to-server endpoint, which the campaign may require for
-- applications. Versioned like campaigns (the newest row wins); deleted
-- with the client's other records.
CREATE TABLE IF NOT EXISTS campaign_guards (
    campaign_id    String,
    client_id      String,
    allowed_hosts  Array(String),
    s2s_secret     String,
    require_signed UInt8,
    version        UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY campaign_id;
