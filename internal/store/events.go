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
	Channel        string // one of the Channel* names
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
	country, region, browser, os, device, bot, consent, kafka_partition, kafka_offset, channel)`

// InsertEvents writes rows in one insert. ClickHouse applies an insert of
// fewer than max_insert_block_size rows into one partition atomically; the
// pipeline relies on that (see README, "exactly once"). Columns are appended
// whole (clickhouse-go's columnar API), which costs far less than boxing
// every value of every row.
func (s *Store) InsertEvents(ctx context.Context, rows []Event) error {
	if len(rows) == 0 {
		return nil
	}
	n := len(rows)
	var (
		date, received                            = make([]time.Time, n), make([]time.Time, n)
		eventID, visitor, ip, country             = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		clientEventID, clientID, campaignID       = make([]string, n), make([]string, n), make([]string, n)
		vacancy, url, referrer, source            = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		channel                                   = make([]string, n)
		utmSource, utmMedium, utmCampaign, region = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		event                                     = make([]int8, n)
		browser, os, device, bot                  = make([]uint8, n), make([]uint8, n), make([]uint8, n), make([]uint8, n)
		consent, partition                        = make([]uint32, n), make([]uint32, n)
		offset                                    = make([]uint64, n)
	)
	for i := range rows {
		r := &rows[i]
		ev, ok := eventValues[r.Event]
		if !ok {
			return fmt.Errorf("store: insert events: row %d: unknown event %q", i, r.Event)
		}
		received[i] = r.Received.UTC()
		date[i] = utcDay(received[i])
		eventID[i], visitor[i], ip[i] = string(r.ID[:]), string(r.Visitor[:]), string(r.IP[:])
		if r.Country != ([2]byte{}) {
			country[i] = string(r.Country[:])
		}
		clientEventID[i], clientID[i], campaignID[i] = r.ClientEventID, r.ClientID, r.CampaignID
		vacancy[i], url[i], referrer[i], source[i], channel[i] = r.Vacancy, r.URL, r.Referrer, r.Source, r.Channel
		utmSource[i], utmMedium[i], utmCampaign[i], region[i] = r.UTMSource, r.UTMMedium, r.UTMCampaign, r.Region
		event[i] = ev
		browser[i], os[i], device[i] = r.Browser, r.OS, r.Device
		if r.Bot {
			bot[i] = 1
		}
		consent[i], partition[i], offset[i] = r.Consent, uint32(r.KafkaPartition), uint64(r.KafkaOffset)
	}
	b, err := s.prepareBatch(ctx, insertEvents)
	if err != nil {
		return fmt.Errorf("store: insert events: %w", err)
	}
	// In the order of insertEvents' column list.
	cols := []any{date, received, eventID, clientEventID, clientID, campaignID, event, vacancy, url, referrer,
		source, utmSource, utmMedium, utmCampaign, visitor, ip, country, region, browser, os, device, bot,
		consent, partition, offset, channel}
	for i, c := range cols {
		if err := b.Column(i).Append(c); err != nil {
			_ = b.Abort()
			return fmt.Errorf("store: insert events: column %d: %w", i, err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("store: insert events (%d rows): %w", n, err)
	}
	return nil
}

// eventValues are the Enum8 values of the events.event column.
var eventValues = map[string]int8{"unknown": 0, "page_view": 1, "apply_click": 2, "application": 3, "vacancy_email": 4}

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
