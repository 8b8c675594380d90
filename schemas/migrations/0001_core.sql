-- Clients (our customers, controller data) and their campaigns. Rows are
-- never updated in place: a change inserts a new row with a higher version,
-- and readers take the latest version per key (argMax), so this works the
-- same on ClickHouse 18.16 and current releases.
CREATE TABLE IF NOT EXISTS clients (
    client_id   String,
    name        String,
    token_hash  String,
    deleted     UInt8,
    updated_at  DateTime,
    version     UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY client_id;

CREATE TABLE IF NOT EXISTS campaigns (
    campaign_id  String,
    client_id    String,
    name         String,
    consentless  Enum8('count' = 0, 'drop' = 1),
    sensitive    UInt8,
    deleted      UInt8,
    updated_at   DateTime,
    version      UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY campaign_id;

-- Anonymised events. ip holds an IPv4-mapped or IPv6 address already
-- truncated (/24, /48). kafka_partition/kafka_offset record where each row
-- came from: the pipeline resumes after the highest stored offset, which is
-- what makes the counts exactly-once (see README).
CREATE TABLE IF NOT EXISTS events (
    date             Date,
    received         DateTime,
    event_id         FixedString(16),
    client_event_id  String,
    client_id        String,
    campaign_id      String,
    event            Enum8('unknown' = 0, 'page_view' = 1, 'apply_click' = 2, 'application' = 3, 'vacancy_email' = 4),
    vacancy          String,
    url              String,
    referrer         String,
    source           String,
    utm_source       String,
    utm_medium       String,
    utm_campaign     String,
    visitor          FixedString(16),
    ip               FixedString(16),
    country          FixedString(2),
    region           String,
    browser          UInt8,
    os               UInt8,
    device           UInt8,
    bot              UInt8,
    consent          UInt32,
    kafka_partition  UInt32,
    kafka_offset     UInt64
) ENGINE = MergeTree
PARTITION BY toYYYYMM(date)
ORDER BY (client_id, campaign_id, date, event);

-- Conversion aggregate per client, campaign, day and traffic source, for
-- people only (bots are counted in bots_daily).
CREATE TABLE IF NOT EXISTS conversions_daily (
    client_id      String,
    campaign_id    String,
    date           Date,
    source         String,
    page_views     AggregateFunction(sum, UInt64),
    apply_clicks   AggregateFunction(sum, UInt64),
    applications   AggregateFunction(sum, UInt64),
    vacancy_emails AggregateFunction(sum, UInt64),
    visitors       AggregateFunction(uniq, FixedString(16))
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(date)
ORDER BY (client_id, campaign_id, date, source);

CREATE MATERIALIZED VIEW IF NOT EXISTS conversions_daily_mv TO conversions_daily AS
SELECT
    client_id, campaign_id, date, source,
    sumState(toUInt64(event = 'page_view'))     AS page_views,
    sumState(toUInt64(event = 'apply_click'))   AS apply_clicks,
    sumState(toUInt64(event = 'application'))   AS applications,
    sumState(toUInt64(event = 'vacancy_email')) AS vacancy_emails,
    uniqState(visitor)                          AS visitors
FROM events
WHERE bot = 0
GROUP BY client_id, campaign_id, date, source;

CREATE TABLE IF NOT EXISTS bots_daily (
    client_id    String,
    campaign_id  String,
    date         Date,
    hits         UInt64
) ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(date)
ORDER BY (client_id, campaign_id, date);

CREATE MATERIALIZED VIEW IF NOT EXISTS bots_daily_mv TO bots_daily AS
SELECT client_id, campaign_id, date, count() AS hits
FROM events
WHERE bot = 1
GROUP BY client_id, campaign_id, date;
