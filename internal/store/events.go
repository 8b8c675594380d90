package store

import (
	"context"
	"fmt"
	"time"
)

// Event is one anonymised row of the events table. IP is already truncated.
type Event struct {
	Received       time.Time
	ID             [16]byte
	ClientEventID  string
	ClientID       string
	CampaignID     string
	Event          string
	Vacancy        string
	URL            string
	Referrer       string
	Source         string
	UTMSource      string
	UTMMedium      string
	UTMCampaign    string
	Visitor        [16]byte
	IP             [16]byte
	Country        [2]byte
	Region         string
	Browser        uint8
	OS             uint8
	Device         uint8
	Bot            bool
	Consent        uint32
	KafkaPartition int32
	KafkaOffset    int64
}

const insertEvents = `INSERT INTO events (date, received, event_id, client_event_id, client_id, campaign_id,
	event, vacancy, url, referrer, source, utm_source, utm_medium, utm_campaign, visitor, ip,
	country, region, browser, os, device, bot, consent, kafka_partition, kafka_offset)`

// InsertEvents writes rows in one insert. ClickHouse applies an insert of
// fewer than max_insert_block_size rows into one partition atomically; the
// pipeline relies on that (see README, "exactly once").
func (s *Store) InsertEvents(ctx context.Context, rows []Event) error {
	if len(rows) == 0 {
		return nil
	}
	b, err := s.prepareBatch(ctx, insertEvents)
	if err != nil {
		return fmt.Errorf("store: insert events: %w", err)
	}
	for i := range rows {
		r := &rows[i]
		bot := uint8(0)
		if r.Bot {
			bot = 1
		}
		day := r.Received.UTC().Truncate(24 * time.Hour)
		country := string(r.Country[:])
		if r.Country == [2]byte{} {
			country = ""
		}
		err := b.Append(day, r.Received.UTC(), string(r.ID[:]), r.ClientEventID, r.ClientID, r.CampaignID,
			r.Event, r.Vacancy, r.URL, r.Referrer, r.Source, r.UTMSource, r.UTMMedium, r.UTMCampaign,
			string(r.Visitor[:]), string(r.IP[:]), country, r.Region, r.Browser, r.OS, r.Device, bot,
			r.Consent, uint32(r.KafkaPartition), uint64(r.KafkaOffset))
		if err != nil {
			_ = b.Abort()
			return fmt.Errorf("store: insert events: row %d: %w", i, err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("store: insert events (%d rows): %w", len(rows), err)
	}
	return nil
}

// Offsets returns, per Kafka partition, the highest offset stored in the
// events table, or -1 for partitions with no rows. It is where a pipeline
// replica resumes: messages at or below it are already stored.
func (s *Store) Offsets(ctx context.Context, partitions []int) (map[int]int64, error) {
	out := make(map[int]int64, len(partitions))
	for _, p := range partitions {
		out[p] = -1
	}
	var rows []struct {
		Partition uint32 `ch:"kafka_partition"`
		Offset    uint64 `ch:"o"`
	}
	if err := s.conn.Select(ctx, &rows, `SELECT kafka_partition, max(kafka_offset) AS o FROM events GROUP BY kafka_partition`); err != nil {
		return nil, fmt.Errorf("store: stored offsets: %w", err)
	}
	for _, r := range rows {
		if _, ok := out[int(r.Partition)]; ok || len(partitions) == 0 {
			out[int(r.Partition)] = int64(r.Offset)
		}
	}
	return out, nil
}

// StoredWindow describes what the events table already holds for one Kafka
// partition around the point a consumer resumes from.
type StoredWindow struct {
	// Max is the highest stored offset, -1 if none.
	Max int64
	// Offsets holds every stored offset ≥ the resume offset (the window a
	// crash can leave stored but uncommitted). Nil when the window was too
	// large to load; then every offset ≤ Max counts as stored.
	Offsets map[int64]struct{}
	// IDs holds the event ids of the last rows stored before Max, to catch
	// producer retries that wrote a message twice.
	IDs [][16]byte
	// ClientEvents holds the (campaign, client event id) of those rows that
	// have a client event id, to catch pages that sent an event twice.
	ClientEvents []ClientEvent
}

// ClientEvent names an event by the id the page gave it.
type ClientEvent struct {
	Campaign, EventID string
}

// maxWindow bounds how many stored offsets Window loads.
const maxWindow = 1_000_000

// Window loads what a consumer resuming partition at offset from must skip.
// idWindow is how many offsets below Max to load event ids for.
func (s *Store) Window(ctx context.Context, partition int, from int64, idWindow int64) (StoredWindow, error) {
	w := StoredWindow{Max: -1}
	var mx []struct {
		N uint64 `ch:"n"`
		M uint64 `ch:"m"`
	}
	if err := s.conn.Select(ctx, &mx, `SELECT count() AS n, max(kafka_offset) AS m FROM events WHERE kafka_partition = ?`, uint32(partition)); err != nil {
		return w, fmt.Errorf("store: stored offsets of partition %d: %w", partition, err)
	}
	if len(mx) == 0 || mx[0].N == 0 {
		return w, nil
	}
	w.Max = int64(mx[0].M)
	if from < 0 {
		from = 0
	}
	if w.Max >= from && w.Max-from < maxWindow {
		var offs []struct {
			O uint64 `ch:"kafka_offset"`
		}
		if err := s.conn.Select(ctx, &offs, `SELECT kafka_offset FROM events WHERE kafka_partition = ? AND kafka_offset >= ?`, uint32(partition), uint64(from)); err != nil {
			return w, fmt.Errorf("store: stored offsets of partition %d: %w", partition, err)
		}
		w.Offsets = make(map[int64]struct{}, len(offs))
		for _, o := range offs {
			w.Offsets[int64(o.O)] = struct{}{}
		}
	}
	var ids []struct {
		ID       string `ch:"event_id"`
		Campaign string `ch:"campaign_id"`
		EID      string `ch:"client_event_id"`
	}
	if err := s.conn.Select(ctx, &ids, `SELECT event_id, campaign_id, client_event_id FROM events WHERE kafka_partition = ? AND kafka_offset >= ?`,
		uint32(partition), uint64(max(0, w.Max-idWindow))); err != nil {
		return w, fmt.Errorf("store: recent event ids of partition %d: %w", partition, err)
	}
	w.IDs = make([][16]byte, len(ids))
	for i, r := range ids {
		copy(w.IDs[i][:], r.ID)
		if r.EID != "" {
			w.ClientEvents = append(w.ClientEvents, ClientEvent{Campaign: r.Campaign, EventID: r.EID})
		}
	}
	return w, nil
}
