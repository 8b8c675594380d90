-- Write-ahead record of platform requests. Before a request leaves for a
-- platform (a conversions batch, an audience upload or removal) an intent
-- row (done = 0) is written; nothing is sent unless it was. Once the
-- platform answered, a second row with the same intent_id and done = 1 is
-- written right after the request's forward_ledger rows, naming their
-- batch ids. An intent without a done row is a request that may have left
-- while its answer was never recorded (the process stopped): the ledger API
-- lists it as unconfirmed. Counts and ids only, never identifiers.
-- (A new table rather than a column on forward_ledger: ClickHouse 18.16
-- has no ADD COLUMN IF NOT EXISTS.)
CREATE TABLE IF NOT EXISTS forward_intents (
    date                Date,
    at                  DateTime,
    intent_id           String,
    done                UInt8,
    recorded_at         DateTime,
    client_id           String,
    campaign_id         String,
    platform            String,
    purpose             String,
    api                 String,
    destination         String,
    instruction_version UInt32,
    items               UInt32,
    hashed_identifiers  UInt32,
    consent_basis       String,
    batch_ids           Array(String)
) ENGINE = MergeTree
PARTITION BY toYYYYMM(date)
ORDER BY (client_id, campaign_id, at, intent_id);
