package linkedin_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jobpixel/jobpixel/forward"
	"github.com/jobpixel/jobpixel/forward/internal/httpx"
	"github.com/jobpixel/jobpixel/forward/linkedin"
)

// TestRefreshTokenCredentials: with a refresh token, the 60-day access
// token is replaced before it expires, with the refresh token LinkedIn
// rotated, and after a 401; once the app's credentials are refused the
// send fails with ErrCredentials, naming when the credentials expired.
func TestRefreshTokenCredentials(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	tokens := e.fake.Tokens
	tokens.AddClient("app-1", "app-secret", "rt-1")
	dest := e.dest
	dest.Token, dest.Tokens = "", linkedin.RefreshToken(e.fake.URL()+"/token", "app-1", "app-secret", "rt-1", e.fake.Client(), e.clock.Now)
	send := func(i int) error {
		t.Helper()
		cv := conversion(i)
		cv.Time = e.clock.Now().Add(-time.Hour)
		_, err := e.client.SendConversions(ctx, dest, []forward.Conversion{cv})
		return err
	}
	if err := send(1); err != nil || tokens.Requests() != 1 {
		t.Fatalf("first send: %v, %d token requests", err, tokens.Requests())
	}
	// Day 60 minus a little: replaced, with the rotated refresh token (the
	// fake has retired rt-1, so rt-1 would be refused).
	e.clock.Advance(60*24*time.Hour - httpx.RefreshBefore + time.Second)
	if err := send(2); err != nil || tokens.Requests() != 2 {
		t.Fatalf("refresh before expiry: %v, %d token requests, want 2", err, tokens.Requests())
	}
	for _, r := range e.fake.Requests() {
		if r.Status == 401 {
			t.Fatal("a request left with an expired token")
		}
	}
	tokens.ExpireAll()
	tokens.Revoke("rt-1") // no longer the refresh token: nothing changes
	if err := send(3); err != nil || tokens.Requests() != 3 {
		t.Fatalf("after a 401: %v, %d token requests, want 3", err, tokens.Requests())
	}
	// LinkedIn ends the token early and the app's secret was reset: the
	// credentials count as expired when the 401 came.
	expiry := e.clock.Now().UTC().Format(time.RFC3339)
	e.fake.Tokens.ExpireAll()
	e.fake.Tokens.AddClient("app-1", "wrong-now", "unused")
	err := send(4)
	if !errors.Is(err, forward.ErrCredentials) || !strings.Contains(err.Error(), "LinkedIn credentials expired at "+expiry) {
		t.Fatalf("refused refresh: %v; want ErrCredentials naming %s", err, expiry)
	}
}
