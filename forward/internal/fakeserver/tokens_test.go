package fakeserver

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/jwt"
)

// TestTokensRefusals: the token endpoint refuses what a real one refuses,
// with RFC 6749 error codes, and its tokens expire on its clock.
func TestTokensRefusals(t *testing.T) {
	now := time.Date(2026, 10, 14, 12, 0, 0, 0, time.UTC)
	tk := NewTokens(time.Hour, func() time.Time { return now }, false)
	srv := httptest.NewServer(tk)
	defer srv.Close()
	url := srv.URL + TokenPath
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, srv.Client())
	tk.AddClient("c", "s", "rt")
	refresh := func(id, secret, rt string) (*oauth2.Token, error) {
		cfg := &oauth2.Config{ClientID: id, ClientSecret: secret, Endpoint: oauth2.Endpoint{TokenURL: url, AuthStyle: oauth2.AuthStyleInParams}}
		return cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: rt}).Token()
	}
	code := func(err error) string {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			var body struct {
				Code string `json:"error"`
			}
			_ = json.Unmarshal(re.Body, &body)
			return body.Code
		}
		return "no RetrieveError: " + err.Error()
	}
	tok, err := refresh("c", "s", "rt")
	if err != nil || !tk.Accepts(tok.AccessToken, "static") {
		t.Fatalf("refresh: %v %v", tok, err)
	}
	if tk.Accepts("forged", "static") || !tk.Accepts("static", "static") || !tk.Accepts("any", "") || tk.Accepts("", "") {
		t.Error("Accepts: only issued tokens, the static one, or any non-empty one without a static one")
	}
	now = now.Add(time.Hour)
	if tk.Accepts(tok.AccessToken, "") {
		t.Error("an expired token is accepted")
	}
	for _, c := range []struct{ id, secret, rt, want string }{
		{"c", "wrong", "rt", "invalid_client"},
		{"other", "s", "rt", "invalid_client"},
		{"c", "s", "unknown", "invalid_grant"},
	} {
		if _, err := refresh(c.id, c.secret, c.rt); code(err) != c.want {
			t.Errorf("refresh(%s, %s, %s): %v, want %s", c.id, c.secret, c.rt, err, c.want)
		}
	}

	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	tk.AddServiceAccount("sa@example.iam", &key.PublicKey)
	assert := func(email, aud string, scopes ...string) error {
		cfg := &jwt.Config{Email: email, PrivateKey: pemKey, Scopes: scopes, TokenURL: url, Audience: aud}
		_, err := cfg.TokenSource(ctx).Token()
		return err
	}
	if err := assert("sa@example.iam", "", "scope-a", "scope-b"); err != nil || len(tk.Scopes()) != 1 || tk.Scopes()[0] != "scope-a scope-b" {
		t.Fatalf("assertion: %v, scopes %v", err, tk.Scopes())
	}
	for _, c := range []struct {
		name, email, aud string
		scopes           []string
		want             string
	}{
		{"wrong audience", "sa@example.iam", "https://elsewhere/token", []string{"s"}, "invalid_grant"},
		{"unknown account", "other@example.iam", "", []string{"s"}, "invalid_grant"},
		{"no scope", "sa@example.iam", "", nil, "invalid_scope"},
	} {
		if err := assert(c.email, c.aud, c.scopes...); code(err) != c.want {
			t.Errorf("%s: %v, want %s", c.name, err, c.want)
		}
	}
	tk.Revoke("sa@example.iam")
	if err := assert("sa@example.iam", "", "s"); code(err) != "invalid_grant" {
		t.Errorf("revoked account: %v", err)
	}
}
