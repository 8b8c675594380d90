package google_test

import (
	"context"
	"testing"
	"time"

	"github.com/jobpixel/jobpixel/forward"
	"github.com/jobpixel/jobpixel/forward/google"
	"github.com/jobpixel/jobpixel/forward/internal/golden"
)

func TestGoldenDataManager(t *testing.T) {
	rec := golden.Start(t, 200, `{"requestId":"x"}`)
	c := &google.DataManager{BaseURL: rec.URL, Now: func() time.Time { return t0 }, TermsAccepted: true}
	dest := forward.Destination{Account: "769-372-9833", ID: "7090784486", LoginAccount: "1234567890", Token: "TOKEN"}
	ms := []forward.Member{
		{ID: "a", User: forward.Identity{GoogleEmail: gmailHash, GooglePhone: phoneHash}, Consent: forward.Consent{AdUserData: true, AdPersonalization: true}},
		{ID: "b", User: forward.Identity{GoogleEmail: gmailHash}, Consent: forward.Consent{AdUserData: true}},
	}
	if _, err := c.AddMembers(context.Background(), dest, ms); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RemoveMembers(context.Background(), dest, ms[:1]); err != nil {
		t.Fatal(err)
	}
	in := conversions(2)
	in[0].Value = forward.Value{Amount: "1500.50", Currency: "EUR"}
	in[1].User, in[1].GCLID, in[1].GBRAID = forward.Identity{}, "", "gbraid-1"
	if _, err := c.SendConversions(context.Background(), dest, in); err != nil {
		t.Fatal(err)
	}
	rec.Check(t, "datamanager.golden.json")
}

func TestGoldenAds(t *testing.T) {
	rec := golden.Start(t, 200, `{"results":[{},{}]}`)
	c := &google.Ads{BaseURL: rec.URL, DeveloperToken: "DEVTOKEN", Now: func() time.Time { return t0 },
		Location: time.FixedZone("CEST", 2*3600)}
	in := conversions(2)
	in[0].Value = forward.Value{Amount: "1", Currency: "EUR"}
	if _, err := c.SendConversions(context.Background(), forward.Destination{Account: "769-372-9833", ID: "555", LoginAccount: "123-456-7890", Token: "TOKEN"}, in); err != nil {
		t.Fatal(err)
	}
	rec.Check(t, "ads.golden.json")
}
