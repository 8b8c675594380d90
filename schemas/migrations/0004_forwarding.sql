-- Client instructions to forward a campaign's data to ad platforms. Every
-- change is a new immutable row with the next version; a revocation is a
-- version with revoked = 1. spec holds the instruction without credentials;
-- secrets holds the credentials sealed with AES-256-GCM (key_id names the
-- deployment key, never the key itself).
CREATE TABLE IF NOT EXISTS forward_instructions (
    client_id     String,
    campaign_id   String,
    version       UInt32,
    id            String,
    created_at    DateTime,
    actor         String,
    requested_by  String,
    revoked       UInt8,
    spec          String,
    secrets       String,
    key_id        String
) ENGINE = MergeTree
ORDER BY (campaign_id, version);

-- One row per platform request (forwarded batch, audience upload or
-- removal): what left, on which instruction version and consent basis, and
-- what the platform answered. Counts only, never identifiers.
CREATE TABLE IF NOT EXISTS forward_ledger (
    date                Date,
    at                  DateTime,
    client_id           String,
    campaign_id         String,
    platform            String,
    purpose             String,
    api                 String,
    destination         String,
    instruction_version UInt32,
    consent_basis       String,
    items               UInt32,
    sent                UInt32,
    failed              UInt32,
    hashed_identifiers  UInt32,
    status              UInt16,
    attempts            UInt16,
    outcome             String,
    error               String,
    batch_id            String
) ENGINE = MergeTree
PARTITION BY toYYYYMM(date)
ORDER BY (client_id, campaign_id, at);

-- Items a platform refused for good (or that could not be sent), with the
-- reason. item is our event id or the audience member key.
CREATE TABLE IF NOT EXISTS forward_dead_letters (
    date                Date,
    at                  DateTime,
    client_id           String,
    campaign_id         String,
    platform            String,
    purpose             String,
    api                 String,
    destination         String,
    instruction_version UInt32,
    item                String,
    kind                String,
    status              UInt16,
    code                String,
    reason              String,
    kafka_partition     UInt32,
    kafka_offset        UInt64
) ENGINE = MergeTree
PARTITION BY toYYYYMM(date)
ORDER BY (client_id, campaign_id, at);

-- Conversions already sent (or dead-lettered), by Kafka position: a
-- forwarder resuming a partition skips them, so a restart does not send
-- them twice.
CREATE TABLE IF NOT EXISTS forward_sent (
    date             Date,
    at               DateTime,
    platform         String,
    kafka_partition  UInt32,
    kafka_offset     UInt64,
    event_id         FixedString(16),
    client_id        String,
    campaign_id      String,
    destination      String
) ENGINE = MergeTree
PARTITION BY toYYYYMM(date)
ORDER BY (platform, kafka_partition, kafka_offset);

-- Audience facts: a consenting visitor (by hashed e-mail) did an event of
-- a campaign whose instruction feeds an audience on the platform. Audience
-- membership is computed from these and reconciled with audience_members.
CREATE TABLE IF NOT EXISTS audience_facts (
    date                Date,
    at                  DateTime,
    client_id           String,
    campaign_id         String,
    platform            String,
    instruction_version UInt32,
    event               Enum8('unknown' = 0, 'page_view' = 1, 'apply_click' = 2, 'application' = 3, 'vacancy_email' = 4),
    member              String,
    email               String,
    email_google        String,
    consent             UInt32,
    kafka_partition     UInt32,
    kafka_offset        UInt64
) ENGINE = MergeTree
PARTITION BY toYYYYMM(date)
ORDER BY (platform, campaign_id, member, at);

-- What was added to and removed from each platform audience, under which
-- instruction version: the latest row per (platform, destination, member)
-- is the member's state. Removal requests after a revocation come from here.
CREATE TABLE IF NOT EXISTS audience_members (
    at                  DateTime,
    seq                 UInt64,
    client_id           String,
    campaign_id         String,
    platform            String,
    destination         String,
    member              String,
    email               String,
    email_google        String,
    action              Enum8('add' = 1, 'remove' = 2),
    instruction_version UInt32,
    reason              String,
    batch_id            String
) ENGINE = MergeTree
ORDER BY (platform, campaign_id, destination, member, seq);
