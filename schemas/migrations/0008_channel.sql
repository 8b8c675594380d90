-- The marketing channel of each event (README, "Channels"), classified by
-- the pipeline at insert from click ids, UTM parameters and the referrer
-- (pipeline.Channel), which are not all stored. Rows stored before this
-- column existed keep '' and are reported as "(unknown)". ClickHouse 18.16
-- has no ADD COLUMN IF NOT EXISTS: Migrate treats "column already exists"
-- from an ADD COLUMN as applied, so an interrupted migration runs again.
ALTER TABLE events ADD COLUMN channel String DEFAULT '';
