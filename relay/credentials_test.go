package relay

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jobpixel/jobpixel/consent"
	"github.com/jobpixel/jobpixel/forward/google/googletest"
	"github.com/jobpixel/jobpixel/schemas"
)

// clock is a settable clock shared by a relay and a fake platform, so an
// access token's hour passes at once.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// TestRefreshingCredentials: an instruction with a Google refresh token
// is sent with access tokens from the token endpoint, one kept across
// batches and replaced before it expires (no request meets a 401).
func TestRefreshingCredentials(t *testing.T) {
	e := newEnv(t)
	clk := &clock{t: time.Now()}
	g := googletest.Start(googletest.Config{Token: "no-static-token", Now: clk.Now})
	t.Cleanup(g.Close)
	g.Tokens.AddClient("cid", "client-secret", "rt-1")
	c := e.campaign("refreshing")
	body := func(refresh string) string {
		return fmt.Sprintf(`{"google": {"data_manager_endpoint": %q, "ads_endpoint": %q, "customer_id": %q,
		  "refresh_token": %q, "client_id": "cid", "client_secret": "client-secret", "token_endpoint": %q,
		  "conversions": [{"event": "application", "conversion_action_id": %q}]}}`,
			g.URL(), g.URL(), customerID, refresh, g.URL()+"/token", dmAction)
	}
	e.instruct(c.ID, body("rt-1"))
	cfg := e.config(consent.Google, "refreshing")
	cfg.Now = clk.Now
	e.start(cfg)
	n := 0
	send := func() string {
		t.Helper()
		n++
		v := newVisitor(n)
		g.RegisterEmail(v.email)
		h := hit(c, v, schemas.EventApplication, adsGranted)
		e.produce(h)
		return id(h)
	}
	sent := func(ev string) {
		t.Helper()
		waitFor(t, 30*time.Second, "conversion "+ev+" at Google", func() (bool, string) {
			_, ok := g.Event(ev)
			return ok, fmt.Sprintf("%d events, %d token requests", len(g.Events()), g.Tokens.Requests())
		})
	}
	sent(send())
	sent(send())
	if got := g.Tokens.Requests(); got != 1 {
		t.Fatalf("%d token requests for two batches, want 1 (the token is kept)", got)
	}
	clk.Advance(56 * time.Minute) // within 5 min of the hour: replaced before it expires
	sent(send())
	if got := g.Tokens.Requests(); got != 2 {
		t.Fatalf("%d token requests, want 2", got)
	}
	for _, r := range g.Requests() {
		if r.Status == 401 {
			t.Fatalf("a request met a 401: %+v", g.Requests())
		}
	}
}
