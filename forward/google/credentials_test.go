package google_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jobpixel/jobpixel/forward"
	"github.com/jobpixel/jobpixel/forward/google"
	"github.com/jobpixel/jobpixel/forward/internal/httpx"
)

// statuses returns the statuses of the API requests the fake saw.
func (e *env) statuses() []int {
	var out []int
	for _, r := range e.fake.Requests() {
		out = append(out, r.Status)
	}
	return out
}

// TestRefreshTokenCredentials: with a refresh token, access tokens (an
// hour) come from the token endpoint, are replaced before they expire and
// after a 401, for Data Manager and Ads alike; a revoked refresh token
// fails the send with ErrCredentials and when the credentials expired,
// without a request to the API.
func TestRefreshTokenCredentials(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	tokens := e.fake.Tokens
	tokens.AddClient("client-1", "client-secret", "rt-1")
	src := google.RefreshToken(e.fake.URL()+"/token", "client-1", "client-secret", "rt-1", e.fake.Client(), e.clock.Now)
	list, conv := e.list, e.conv
	list.Token, list.Tokens = "", src
	conv.Token, conv.Tokens = "", src
	add := func() error {
		t.Helper()
		_, err := e.dm.AddMembers(ctx, list, members(1))
		return err
	}
	if err := add(); err != nil || tokens.Requests() != 1 {
		t.Fatalf("first send: %v, %d token requests", err, tokens.Requests())
	}
	e.clock.Advance(time.Hour - httpx.RefreshBefore - time.Minute)
	if err := add(); err != nil || tokens.Requests() != 1 {
		t.Fatalf("token kept: %v, %d token requests, want 1", err, tokens.Requests())
	}
	e.clock.Advance(2 * time.Minute) // inside RefreshBefore: replaced before it expires
	if res, err := e.ads.SendConversions(ctx, conv, []forward.Conversion{{ID: "o1", Time: e.clock.Now().Add(-time.Hour), GCLID: "g1"}}); err != nil || res.Sent() != 1 || tokens.Requests() != 2 {
		t.Fatalf("refreshed before expiry: %v, %d token requests, want 2", err, tokens.Requests())
	}
	for _, s := range e.statuses() {
		if s == 401 {
			t.Fatalf("a request left with an expired token: statuses %v", e.statuses())
		}
	}
	tokens.ExpireAll() // the platform ends the token early: a 401, a refresh, a retry
	if err := add(); err != nil || tokens.Requests() != 3 {
		t.Fatalf("after a 401: %v, %d token requests, want 3", err, tokens.Requests())
	}
	if st := e.statuses(); st[len(st)-2] != 401 || st[len(st)-1] != 200 {
		t.Fatalf("statuses %v, want a 401 then a 200", st)
	}
	expiry := e.clock.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	tokens.Revoke("rt-1")
	e.clock.Advance(time.Hour)
	before := len(e.fake.Requests())
	err := add()
	var fe *forward.Error
	if !errors.Is(err, forward.ErrCredentials) || !errors.As(err, &fe) || fe.Kind != forward.Permanent ||
		!strings.Contains(err.Error(), "Google credentials expired at "+expiry) {
		t.Fatalf("revoked refresh token: %v; want ErrCredentials naming %s", err, expiry)
	}
	if len(e.fake.Requests()) != before {
		t.Error("a request reached the API without a token")
	}
}

// serviceAccountKey returns a JSON key file like Google's and its key.
func serviceAccountKey(t *testing.T, email string) ([]byte, *rsa.PrivateKey) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(map[string]string{"type": "service_account", "client_email": email, "private_key_id": "k1",
		"private_key": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"token_uri":   "https://oauth2.googleapis.com/token"})
	return b, key
}

// TestServiceAccountCredentials: a service account's signed assertion gets
// access tokens for the Data Manager and Ads scopes; once revoked, the
// send fails with ErrCredentials. A key that cannot sign is refused at
// once.
func TestServiceAccountCredentials(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	const email = "forwarder@acme-jobs.iam.gserviceaccount.com"
	keyJSON, key := serviceAccountKey(t, email)
	e.fake.Tokens.AddServiceAccount(email, &key.PublicKey)
	src, err := google.ServiceAccount(keyJSON, e.fake.URL()+"/token", e.fake.Client(), e.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	list := e.list
	list.Token, list.Tokens = "", src
	if _, err := e.dm.AddMembers(ctx, list, members(1)); err != nil {
		t.Fatalf("send with a service account: %v", err)
	}
	if got, want := strings.Join(e.fake.Tokens.Scopes(), "|"), strings.Join(google.Scopes, " "); got != want {
		t.Errorf("scopes asked %q, want %q", got, want)
	}
	e.fake.Tokens.Revoke(email)
	e.fake.Tokens.ExpireAll()
	if _, err := e.dm.AddMembers(ctx, list, members(1)); !errors.Is(err, forward.ErrCredentials) || !strings.Contains(err.Error(), "Google credentials expired at") {
		t.Fatalf("revoked service account: %v", err)
	}
	other, _ := serviceAccountKey(t, email) // a key the endpoint does not know
	src, _ = google.ServiceAccount(other, e.fake.URL()+"/token", e.fake.Client(), e.clock.Now)
	list.Tokens = src
	if _, err := e.dm.AddMembers(ctx, list, members(1)); !errors.Is(err, forward.ErrCredentials) {
		t.Fatalf("unknown key: %v", err)
	}
	for _, bad := range []string{`{"type":"authorized_user"}`, `{"type":"service_account","client_email":"x"}`,
		`{"type":"service_account","client_email":"x","private_key":"not pem"}`, `nope`} {
		if _, err := google.ServiceAccount([]byte(bad), "", nil, nil); err == nil {
			t.Errorf("ServiceAccount(%s) accepted", bad)
		}
	}
}
