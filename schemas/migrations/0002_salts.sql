-- Daily random salts for the cookieless visitor hash, shared by all ingest
-- replicas. One partition per day, so yesterday's salt is destroyed by
-- dropping its partition (immediate, unlike a mutation). Several replicas
-- may race to create a day's salt: all of them use the row with the
-- smallest (created, salt).
CREATE TABLE IF NOT EXISTS salts (
    day      Date,
    salt     FixedString(32),
    created  UInt64
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(day)
ORDER BY (day, created, salt);
