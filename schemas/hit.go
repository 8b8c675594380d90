// Package schemas defines the formats jobpixel shares between its roles: the
// versioned binary encoding of a hit as it travels through Kafka, and the
// ClickHouse DDL applied by migrations.
//
// It is a pure package: it imports only the standard library.
package schemas

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// Event is the kind of a hit. Values are stable on the wire: never renumber.
type Event uint8

// Event kinds.
const (
	EventUnknown      Event = 0
	EventPageView     Event = 1
	EventApplyClick   Event = 2
	EventApplication  Event = 3
	EventVacancyEmail Event = 4
)

var eventNames = [...]string{"unknown", "page_view", "apply_click", "application", "vacancy_email"}

// String returns the name used in the HTTP API and in ClickHouse.
func (e Event) String() string {
	if int(e) < len(eventNames) {
		return eventNames[e]
	}
	return "unknown"
}

// ParseEvent maps an event name from the HTTP API to its Event. It does not
// allocate. Unknown names give EventUnknown.
func ParseEvent(b []byte) Event {
	switch string(b) {
	case "page_view":
		return EventPageView
	case "apply_click":
		return EventApplyClick
	case "application":
		return EventApplication
	case "vacancy_email":
		return EventVacancyEmail
	}
	return EventUnknown
}

// WireVersion is the version this build writes. Decoders accept every version
// from 1 to WireVersion, and also newer versions: fields are only ever
// appended, so a newer record decodes with its unknown tail ignored.
const WireVersion = 1

// Flag bits of Hit.Flags. Stable on the wire.
const (
	// FlagBot marks a hit whose user agent or headless signals say it is not
	// a person. Bots are stored but excluded from conversions.
	FlagBot uint16 = 1 << iota
	// FlagFullIP says Hit.IP holds the full address (ad consent was given);
	// otherwise it is already truncated by ingest.
	FlagFullIP
)

// Hit is one accepted tracking event as it travels from ingest to the
// pipeline. Byte-slice fields may alias the buffer a Hit was decoded from;
// the caller owns that buffer and must not modify it while the Hit is used.
//
// Wire layout of version 1 (all integers little-endian):
//
//	u8  version (=1)
//	u16 flags
//	[16]byte id          server event id (random, unique)
//	i64 received_ms      receive time, unix milliseconds (UTC)
//	u8  event            Event
//	u32 consent          consent.Decision bits resolved at ingest
//	[16]byte visitor     keyed daily visitor hash (zero if none)
//	[16]byte ip          IPv6 or IPv4-mapped address; truncated unless FlagFullIP
//	[2]byte country      ISO 3166-1 alpha-2 or zero
//	u8  browser, u8 os, u8 device   reduced user agent classes
//	then length-prefixed (uvarint) byte strings, in this order:
//	campaign, client, client_event_id, vacancy, url, referrer, user_agent,
//	region, utm_source, utm_medium, utm_campaign, utm_term, utm_content,
//	gclid, gbraid, wbraid, fbc, fbp, li_fat_id, email_meta, email_google
//
// user_agent, the click identifiers and the e-mail hashes are empty unless the
// visitor's consent allowed their use for ads. e-mail fields hold 64-char hex
// SHA-256 digests, never plain addresses.
type Hit struct {
	Flags      uint16
	ID         [16]byte
	ReceivedMs int64
	Event      Event
	Consent    uint32
	Visitor    [16]byte
	IP         [16]byte
	Country    [2]byte
	Browser    uint8
	OS         uint8
	Device     uint8

	Campaign      []byte
	Client        []byte // client owning Campaign, resolved at ingest
	ClientEventID []byte
	Vacancy       []byte
	URL           []byte
	Referrer      []byte
	UserAgent     []byte
	Region        []byte
	UTMSource     []byte
	UTMMedium     []byte
	UTMCampaign   []byte
	UTMTerm       []byte
	UTMContent    []byte
	Gclid         []byte
	Gbraid        []byte
	Wbraid        []byte
	Fbc           []byte
	Fbp           []byte
	LiFatID       []byte
	EmailMeta     []byte
	EmailGoogle   []byte
}

// fixedLen is the size of the fixed-width head of a version 1 record.
const fixedLen = 1 + 2 + 16 + 8 + 1 + 4 + 16 + 16 + 2 + 3

// MaxFieldLen bounds every variable field; longer input is rejected by
// ingest and by Decode.
const MaxFieldLen = 8192

// strings returns pointers to the variable fields in wire order.
func (h *Hit) strings() [21]*[]byte {
	return [21]*[]byte{
		&h.Campaign, &h.Client, &h.ClientEventID, &h.Vacancy, &h.URL, &h.Referrer, &h.UserAgent,
		&h.Region, &h.UTMSource, &h.UTMMedium, &h.UTMCampaign, &h.UTMTerm, &h.UTMContent,
		&h.Gclid, &h.Gbraid, &h.Wbraid, &h.Fbc, &h.Fbp, &h.LiFatID, &h.EmailMeta, &h.EmailGoogle,
	}
}

// Append appends the version-1 encoding of h to dst and returns the
// extended slice. It allocates only when dst lacks capacity.
func (h *Hit) Append(dst []byte) []byte {
	dst = append(dst, WireVersion)
	dst = binary.LittleEndian.AppendUint16(dst, h.Flags)
	dst = append(dst, h.ID[:]...)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(h.ReceivedMs))
	dst = append(dst, byte(h.Event))
	dst = binary.LittleEndian.AppendUint32(dst, h.Consent)
	dst = append(dst, h.Visitor[:]...)
	dst = append(dst, h.IP[:]...)
	dst = append(dst, h.Country[:]...)
	dst = append(dst, h.Browser, h.OS, h.Device)
	for _, f := range h.strings() {
		dst = binary.AppendUvarint(dst, uint64(len(*f)))
		dst = append(dst, *f...)
	}
	return dst
}

// ErrTruncated reports a record that ends before its last field.
var ErrTruncated = errors.New("truncated hit record")

// Decode parses a record written by Append (any version ≥ 1) into h. The
// byte-slice fields of h alias b. It does not allocate.
func (h *Hit) Decode(b []byte) error {
	if len(b) == 0 {
		return ErrTruncated
	}
	if b[0] == 0 {
		return fmt.Errorf("hit record version 0 is invalid")
	}
	if len(b) < fixedLen {
		return ErrTruncated
	}
	h.Flags = binary.LittleEndian.Uint16(b[1:])
	copy(h.ID[:], b[3:19])
	h.ReceivedMs = int64(binary.LittleEndian.Uint64(b[19:]))
	h.Event = Event(b[27])
	h.Consent = binary.LittleEndian.Uint32(b[28:])
	copy(h.Visitor[:], b[32:48])
	copy(h.IP[:], b[48:64])
	copy(h.Country[:], b[64:66])
	h.Browser, h.OS, h.Device = b[66], b[67], b[68]
	rest := b[fixedLen:]
	for i, f := range h.strings() {
		n, k := binary.Uvarint(rest)
		if k <= 0 {
			return fmt.Errorf("field %d: %w", i, ErrTruncated)
		}
		rest = rest[k:]
		if n > MaxFieldLen || n > uint64(len(rest)) {
			return fmt.Errorf("field %d: length %d: %w", i, n, ErrTruncated)
		}
		*f = rest[:n:n]
		rest = rest[n:]
	}
	// Bytes left over belong to fields of a newer version: ignored.
	return nil
}

// Client event ids are bounded at ingest: a campaign id has at most
// MaxCampaignLen bytes, a client event id MaxClientEventIDLen.
const (
	MaxCampaignLen      = 64
	MaxClientEventIDLen = 128
)

// ClientEventKey is the key of a page's event (campaign, client event id):
// the first 16 bytes of SHA-256 over a domain prefix, the campaign, a zero
// byte and the id. Every copy of a retried event has the same key, so it is
// what ingest partitions such hits by (when they have no visitor hash),
// what the pipeline drops repeats by, and the dedup key the platforms
// receive. Longer inputs than the ingest bounds are cut at them. It does
// not allocate.
func ClientEventKey(campaign, eid []byte) [16]byte {
	const domain = "jobpixel client event\x00"
	var buf [len(domain) + MaxCampaignLen + 1 + MaxClientEventIDLen]byte
	n := copy(buf[:], domain)
	n += copy(buf[n:n+MaxCampaignLen], campaign)
	buf[n] = 0
	n++
	n += copy(buf[n:], eid)
	sum := sha256.Sum256(buf[:n])
	return [16]byte(sum[:16])
}
