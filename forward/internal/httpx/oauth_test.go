package httpx

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/jobpixel/jobpixel/forward"
	"github.com/jobpixel/jobpixel/internal/fakeclock"
)

var t0 = time.Date(2026, 10, 14, 14, 45, 18, 0, time.UTC)

// stubEndpoint is a token endpoint answering tokens "at1", "at2", ... of
// an hour each, or err when set.
type stubEndpoint struct {
	mu      sync.Mutex
	n       int
	err     error
	refresh []string // the refresh token each fetch was given
}

func (s *stubEndpoint) fetch(_ context.Context, refresh string) (*oauth2.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refresh = append(s.refresh, refresh)
	if s.err != nil {
		return nil, s.err
	}
	s.n++
	return &oauth2.Token{AccessToken: fmt.Sprintf("at%d", s.n), RefreshToken: fmt.Sprintf("rt%d", s.n),
		Expiry: time.Now().Add(time.Hour)}, nil
}

func refused(status int, code string) error {
	return &oauth2.RetrieveError{Response: &http.Response{StatusCode: status, Header: http.Header{}},
		ErrorCode: code, ErrorDescription: "Token has been expired or revoked."}
}

// TestOAuthRefreshesBeforeExpiry: the token is kept until RefreshBefore its
// expiry, replaced then, and replaced at once after Invalidate; a rotated
// refresh token is used from then on.
func TestOAuthRefreshesBeforeExpiry(t *testing.T) {
	clock := fakeclock.New(t0)
	ep := &stubEndpoint{}
	o := NewOAuth("Google", nil, ep.fetch, clock.Now)
	ctx := context.Background()
	want := func(tok forward.Secret) {
		t.Helper()
		got, err := o.Token(ctx)
		if err != nil || got != tok {
			t.Fatalf("Token = %q, %v; want %q", got, err, tok)
		}
	}
	want("at1")
	clock.Advance(time.Hour - RefreshBefore - time.Second)
	want("at1")
	clock.Advance(2 * time.Second) // now inside RefreshBefore
	want("at2")
	o.Invalidate("at1") // not the kept token: nothing happens
	want("at2")
	o.Invalidate("at2")
	want("at3")
	if got := strings.Join(ep.refresh, ","); got != ",rt1,rt2" {
		t.Errorf("refresh tokens used: %q, want the rotated ones after the first", got)
	}
}

// TestOAuthFailures: a refused refresh names when the credentials expired
// and wraps ErrCredentials; an endpoint that fails or throttles is
// retryable; a failed early refresh keeps the token while it is valid.
func TestOAuthFailures(t *testing.T) {
	ctx := context.Background()
	clock := fakeclock.New(t0)
	ep := &stubEndpoint{}
	o := NewOAuth("Google", nil, ep.fetch, clock.Now)
	if _, err := o.Token(ctx); err != nil {
		t.Fatal(err)
	}
	ep.err = refused(400, "invalid_grant")
	clock.Advance(time.Hour - time.Minute) // early refresh fails
	if tok, err := o.Token(ctx); err != nil || tok != "at1" {
		t.Fatalf("early refresh failed: Token = %q, %v; want the kept at1", tok, err)
	}
	clock.Advance(2 * time.Minute) // at1 expired
	_, err := o.Token(ctx)
	var fe *forward.Error
	if !errors.As(err, &fe) || fe.Kind != forward.Permanent || fe.Code != "invalid_grant" || !errors.Is(err, forward.ErrCredentials) ||
		!strings.Contains(err.Error(), "Google credentials expired at 2026-10-14T15:45:18Z") {
		t.Fatalf("refused refresh: %v", err)
	}

	fresh := NewOAuth("LinkedIn", nil, ep.fetch, clock.Now) // never had a token
	if _, err := fresh.Token(ctx); !errors.Is(err, forward.ErrCredentials) || !strings.Contains(err.Error(), "LinkedIn credentials expired or were revoked") {
		t.Fatalf("refused first refresh: %v", err)
	}
	for _, c := range []struct {
		err  error
		kind forward.Kind
	}{
		{refused(503, ""), forward.Retryable},
		{refused(429, ""), forward.Throttled},
		{errors.New("dial tcp: connection refused"), forward.Retryable},
	} {
		ep.err = c.err
		_, err := o.Token(ctx)
		if forward.Classify(err) != c.kind || errors.Is(err, forward.ErrCredentials) {
			t.Errorf("%v: Token err = %v, want %v and not ErrCredentials", c.err, err, c.kind)
		}
	}
}

// TestDoBearer: a 401 to a token of the source invalidates it and the
// request is made once more with a fresh one; a second 401 is the answer.
// A static token is sent as is.
func TestDoBearer(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	refuse := map[string]bool{"at1": true}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		mu.Lock()
		seen = append(seen, tok)
		no := refuse[tok] || refuse["*"]
		mu.Unlock()
		if no {
			w.WriteHeader(http.StatusUnauthorized)
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	ep := &stubEndpoint{}
	dest := forward.Destination{Tokens: NewOAuth("Google", nil, ep.fetch, nil)}
	req := Request{Method: "POST", URL: srv.URL, Header: JSONHeader()}
	resp, err := DoBearer(ctx, srv.Client(), req, time.Second, dest)
	if err != nil || resp.Status != 200 || strings.Join(seen, ",") != "at1,at2" {
		t.Fatalf("DoBearer = %v, %v; tokens sent %v, want at1 (refused) then at2", resp, err, seen)
	}
	if req.Header.Get("Authorization") != "" {
		t.Error("DoBearer changed the caller's header")
	}
	seen, refuse = nil, map[string]bool{"*": true}
	resp, err = DoBearer(ctx, srv.Client(), req, time.Second, dest)
	if err != nil || resp.Status != 401 || len(seen) != 2 {
		t.Fatalf("always 401: %v, %v after %d requests; want the second 401", resp, err, len(seen))
	}
	seen, refuse = nil, nil
	if _, err := DoBearer(ctx, srv.Client(), req, time.Second, forward.Destination{Token: "static"}); err != nil || strings.Join(seen, ",") != "static" {
		t.Fatalf("static token: %v, sent %v", err, seen)
	}
	ep.err = refused(400, "invalid_grant")
	seen = nil
	dest = forward.Destination{Tokens: NewOAuth("Google", nil, ep.fetch, nil)}
	if _, err := DoBearer(ctx, srv.Client(), req, time.Second, dest); !errors.Is(err, forward.ErrCredentials) || len(seen) != 0 {
		t.Fatalf("refused refresh: %v after %d requests; want ErrCredentials and no request", err, len(seen))
	}
}
