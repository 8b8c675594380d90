package meta_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/jobpixel/jobpixel/forward"
	"github.com/jobpixel/jobpixel/forward/internal/golden"
	"github.com/jobpixel/jobpixel/forward/meta"
)

func TestGoldenEvents(t *testing.T) {
	rec := golden.Start(t, 200, `{"events_received":2,"messages":[],"fbtrace_id":"x"}`)
	c := &meta.Client{BaseURL: rec.URL, Now: func() time.Time { return t0 }}
	full := conversion(1)
	full.IP = netip.MustParseAddr("203.0.113.7")
	full.User.Phone = phoneHash
	full.FBC = "fb.1.1697241600000.IwAR2xYz-AbC_dEf"
	full.FBP = "fb.1.1697241600000.1098115397"
	full.Value = forward.Value{Amount: "1500.50", Currency: "EUR"}
	full.LDU = true
	if _, err := c.SendConversions(context.Background(), forward.Destination{ID: pixel, Token: "TOKEN"},
		[]forward.Conversion{full, conversion(2)}); err != nil {
		t.Fatal(err)
	}
	rec.Check(t, "events.golden.json")
}

func TestGoldenUsers(t *testing.T) {
	rec := golden.Start(t, 200, `{"audience_id":"1","session_id":"1","num_received":2,"num_invalid_entries":0,"invalid_entry_samples":{}}`)
	c := &meta.Client{BaseURL: rec.URL, SessionID: func() int64 { return 9778993 }}
	ms := []forward.Member{
		{ID: "a", User: forward.Identity{Email: maryHash, Phone: phoneHash}},
		{ID: "b", User: forward.Identity{Email: maryHash}, ExternalID: "crm-7"},
	}
	dest := forward.Destination{ID: "23850000000000001", Token: "TOKEN"}
	if _, err := c.AddMembers(context.Background(), dest, ms); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RemoveMembers(context.Background(), dest, ms); err != nil {
		t.Fatal(err)
	}
	rec.Check(t, "users.golden.json")
}
