package relay

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jobpixel/jobpixel/consent"
	"github.com/jobpixel/jobpixel/forward/google/googletest"
	"github.com/jobpixel/jobpixel/internal/fakeclock"
	"github.com/jobpixel/jobpixel/schemas"
)

// warnings counts the warnings logged with a message.
type warnings struct {
	mu  sync.Mutex
	n   map[string]int
	log []string
}

func (w *warnings) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (w *warnings) Handle(_ context.Context, r slog.Record) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	line := r.Message
	r.Attrs(func(a slog.Attr) bool { line += " " + a.String(); return true })
	w.n[r.Message]++
	w.log = append(w.log, line)
	return nil
}
func (w *warnings) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *warnings) WithGroup(string) slog.Handler      { return w }
func (w *warnings) count(msg string) (int, []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n[msg], append([]string(nil), w.log...)
}

const refusedMsg = "credentials refused: holding the destination's work until new credentials arrive"

// TestRefreshingCredentials: an instruction with a Google refresh token
// is sent with access tokens from the token endpoint, one kept across
// batches and replaced before it expires (no request meets a 401). Once
// the refresh token is revoked and the access token expired, the work is
// held, not dead-lettered: the instruction's status says when the
// credentials expired, a warning is logged once; a new version with a
// fresh refresh token clears the status and the held work is sent.
func TestRefreshingCredentials(t *testing.T) {
	e := newEnv(t)
	clk := fakeclock.New(time.Now()) // shared by the relay and the fake platform: a token's hour passes at once
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
	w := &warnings{n: map[string]int{}}
	e.startWith(cfg, e.st, func(r *Relay) { r.log = slog.New(w) })
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

	expiry := clk.Now().Add(time.Hour).UTC().Format(time.RFC3339) // the token just fetched
	g.Tokens.Revoke("rt-1")
	clk.Advance(2 * time.Hour)
	held := send()
	want := "Google credentials expired at " + expiry + "; send new credentials"
	ctx := context.Background()
	status := func() string {
		fs, err := e.st.ForwardStatuses(ctx, e.client.ID, c.ID, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(fs) == 0 {
			return ""
		}
		return fs[0].Status
	}
	waitFor(t, 30*time.Second, "the status", func() (bool, string) { s := status(); return s == want, s })
	// Held: retried (each retry asks the token endpoint again), never
	// dead-lettered, logged once.
	asked := g.Tokens.Requests()
	waitFor(t, 30*time.Second, "retries", func() (bool, string) {
		return g.Tokens.Requests() >= asked+2, fmt.Sprint(g.Tokens.Requests())
	})
	if d := e.deadLetters(); len(d) != 0 {
		t.Fatalf("dead letters %+v", d)
	}
	if _, ok := g.Event(held); ok {
		t.Fatal("sent with revoked credentials")
	}
	if n, log := w.count(refusedMsg); n != 1 || !strings.Contains(strings.Join(log, "\n"), want) {
		t.Fatalf("%d warnings, want 1 naming %q:\n%s", n, want, strings.Join(log, "\n"))
	}
	g.Tokens.AddClient("cid", "client-secret", "rt-2")
	e.instruct(c.ID, body("rt-2"))
	sent(held)
	waitFor(t, 30*time.Second, "version 1's status kept, version 2 without", func() (bool, string) {
		fs, err := e.st.ForwardStatuses(ctx, e.client.ID, c.ID, 2)
		return err == nil && len(fs) == 0 && status() == want, fmt.Sprint(fs, err)
	})
	if d := e.deadLetters(); len(d) != 0 {
		t.Fatalf("dead letters %+v", d)
	}
}

// TestMetaTokenRefused: a Meta access token Meta refuses (code 190) holds
// the conversions, never dead-letters them, and sets the status; a new
// version with a working token sends them.
func TestMetaTokenRefused(t *testing.T) {
	e := newEnv(t)
	c := e.campaign("expired-token")
	body := `{"meta": {"endpoint": %q, "access_token": %q,
	  "conversions": [{"event": "application", "pixel_id": %q, "event_name": "Lead"}]}}`
	e.instruct(c.ID, fmt.Sprintf(body, e.meta.URL(), "expired-token", pixelID))
	e.start(e.config(consent.Meta, "meta-refused"))
	v := newVisitor(1)
	e.register(v)
	h := hit(c, v, schemas.EventApplication, adsGranted)
	e.produce(h)
	want := "Meta refused the access token (code 190: invalid or expired); send new credentials"
	waitFor(t, 30*time.Second, "the status", func() (bool, string) {
		fs, err := e.st.ForwardStatuses(context.Background(), e.client.ID, c.ID, 1)
		return err == nil && len(fs) == 1 && fs[0].Status == want, fmt.Sprint(fs, err)
	})
	if _, ok := e.meta.Event(id(h)); ok {
		t.Fatal("sent with a refused token")
	}
	if d := e.deadLetters(); len(d) != 0 {
		t.Fatalf("dead letters %+v", d)
	}
	e.instruct(c.ID, fmt.Sprintf(body, e.meta.URL(), metaToken, pixelID))
	waitFor(t, 30*time.Second, "the held conversion", func() (bool, string) {
		_, ok := e.meta.Event(id(h))
		return ok, fmt.Sprint(len(e.meta.Events()))
	})
	if d := e.deadLetters(); len(d) != 0 {
		t.Fatalf("dead letters %+v", d)
	}
}
