package main

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"github.com/jobpixel/jobpixel/internal/store"
	"github.com/jobpixel/jobpixel/pipeline"
	"github.com/jobpixel/jobpixel/schemas"
)

// hitGen makes the preloaded pipeline hits: hit i is a pure function of i,
// so the raw baseline can produce the very rows the pipeline stores without
// decoding or anonymising anything (see row).
//
// Hits look like what ingest writes without ad consent: the IP already
// truncated to /24 (IPv4-mapped), no user agent or click ids, a visitor
// hash, UTM parameters on about half of the URLs, a referrer on two thirds.
type hitGen struct {
	tpl    []hitTemplate
	baseMs int64
}

type hitTemplate struct {
	campaign, client, vacancy, url, referrer []byte
	utmSource, utmMedium, utmCampaign        []byte
	event                                    schemas.Event
	country                                  [2]byte
	region                                   []byte
	browser, os, device                      uint8
	bot                                      bool
	consent                                  uint32
	// The same, as the pipeline stores them.
	s struct {
		campaign, client, event, vacancy, url, referrer, source string
		utmSource, utmMedium, utmCampaign, region               string
	}
}

// idPrefix starts the event id of every preloaded hit; the last 8 bytes of
// the id are the hit's index, little-endian.
var idPrefix = [8]byte{'b', 'e', 'n', 'c', 'h', 'p', 'l', 0}

var countries = [][2]byte{{'D', 'E'}, {'N', 'L'}, {'F', 'R'}, {'G', 'B'}, {'A', 'T'}, {}}

func newHitGen(campaigns []string, clientID string, baseMs int64) *hitGen {
	g := &hitGen{baseMs: baseMs}
	evs := []schemas.Event{schemas.EventPageView, schemas.EventPageView, schemas.EventPageView, schemas.EventPageView,
		schemas.EventPageView, schemas.EventPageView, schemas.EventApplyClick, schemas.EventApplyClick,
		schemas.EventApplication, schemas.EventVacancyEmail}
	for i := 0; i < 512; i++ {
		var t hitTemplate
		t.campaign = []byte(campaigns[i%len(campaigns)])
		t.client = []byte(clientID)
		t.vacancy = []byte(fmt.Sprintf("job-%d", i%97))
		// Ingest strips e-mail addresses and unknown tracking parameters;
		// what reaches Kafka is the scrubbed URL.
		t.url = []byte(pageURL(i))
		if i%4 == 1 {
			t.url = []byte(fmt.Sprintf("https://jobs.example.com/jobs/%d-senior-go-engineer?utm_source=%s", 1000+i%500, utmSources[(i/4)%len(utmSources)]))
		}
		if i%3 != 0 {
			t.referrer = []byte(referrers[i%len(referrers)])
		}
		t.utmSource, t.utmMedium, t.utmCampaign = queryParam(t.url, "utm_source"), queryParam(t.url, "utm_medium"), queryParam(t.url, "utm_campaign")
		t.event = evs[i%len(evs)]
		t.country = countries[i%len(countries)]
		if t.country != ([2]byte{}) {
			t.region = []byte(fmt.Sprintf("R%d", i%7))
		}
		t.browser, t.os, t.device = uint8(i%5), uint8(i%4), uint8(i%3)
		t.bot = i%50 == 7
		t.consent = uint32(i % 3)
		t.s.campaign, t.s.client, t.s.event, t.s.vacancy = string(t.campaign), string(t.client), t.event.String(), string(t.vacancy)
		t.s.url, t.s.referrer = string(t.url), string(t.referrer)
		t.s.source = pipeline.Source(t.utmSource, t.url, t.referrer)
		t.s.utmSource, t.s.utmMedium, t.s.utmCampaign, t.s.region = string(t.utmSource), string(t.utmMedium), string(t.utmCampaign), string(t.region)
		g.tpl = append(g.tpl, t)
	}
	return g
}

func queryParam(u []byte, key string) []byte {
	s := string(u)
	for _, sep := range []string{"?", "&"} {
		k := sep + key + "="
		for i := 0; i+len(k) <= len(s); i++ {
			if s[i:i+len(k)] == k {
				v := s[i+len(k):]
				for j := 0; j < len(v); j++ {
					if v[j] == '&' || v[j] == '#' {
						v = v[:j]
						break
					}
				}
				return []byte(v)
			}
		}
	}
	return nil
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

func (g *hitGen) id(i uint64) (id [16]byte) {
	copy(id[:8], idPrefix[:])
	binary.LittleEndian.PutUint64(id[8:], i)
	return id
}

// visitor: about three hits per visitor.
func (g *hitGen) visitor(i uint64) (v [16]byte) {
	binary.LittleEndian.PutUint64(v[:8], splitmix(i/3))
	binary.LittleEndian.PutUint64(v[8:], splitmix(i/3+1<<40))
	return v
}

// ip: an IPv4 /24 (already truncated, as ingest sends it without ad
// consent), IPv4-mapped.
func (g *hitGen) ip(i uint64) [16]byte {
	x := splitmix(i / 3)
	return netip.AddrFrom4([4]byte{10 + byte(x%200), byte(x >> 8), byte(x >> 16), 0}).As16()
}

func (g *hitGen) receivedMs(i uint64) int64 { return g.baseMs + int64(i*37%3_600_000) }

// fill sets h to hit i. Byte slices alias the generator's templates.
func (g *hitGen) fill(i uint64, h *schemas.Hit) {
	t := &g.tpl[i%uint64(len(g.tpl))]
	*h = schemas.Hit{
		ID: g.id(i), ReceivedMs: g.receivedMs(i), Event: t.event, Consent: t.consent,
		Visitor: g.visitor(i), IP: g.ip(i), Country: t.country, Browser: t.browser, OS: t.os, Device: t.device,
		Campaign: t.campaign, Client: t.client, Vacancy: t.vacancy, URL: t.url, Referrer: t.referrer,
		Region: t.region, UTMSource: t.utmSource, UTMMedium: t.utmMedium, UTMCampaign: t.utmCampaign,
	}
	if t.bot {
		h.Flags |= schemas.FlagBot
	}
}

// indexOf returns i of an encoded hit (its id's counter) without decoding.
func indexOf(value []byte) (uint64, bool) {
	// version u8, flags u16, then the 16-byte id.
	if len(value) < 19 || [8]byte(value[3:11]) != idPrefix {
		return 0, false
	}
	return binary.LittleEndian.Uint64(value[11:19]), true
}

// row is the stored form of hit i, exactly as the pipeline makes it (its
// anonymisation of an already-truncated /24 address changes nothing).
func (g *hitGen) row(i uint64, partition int, offset int64) store.Event {
	t := &g.tpl[i%uint64(len(g.tpl))]
	return store.Event{
		Received: time.UnixMilli(g.receivedMs(i)).UTC(), ID: g.id(i),
		ClientID: t.s.client, CampaignID: t.s.campaign, Event: t.s.event, Vacancy: t.s.vacancy,
		URL: t.s.url, Referrer: t.s.referrer, Source: t.s.source,
		UTMSource: t.s.utmSource, UTMMedium: t.s.utmMedium, UTMCampaign: t.s.utmCampaign,
		Visitor: g.visitor(i), IP: g.ip(i), Country: t.country, Region: t.s.region,
		Browser: t.browser, OS: t.os, Device: t.device, Bot: t.bot, Consent: t.consent,
		KafkaPartition: int32(partition), KafkaOffset: offset,
	}
}
