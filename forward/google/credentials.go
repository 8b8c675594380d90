package google

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/jwt"

	"github.com/jobpixel/jobpixel/forward"
	"github.com/jobpixel/jobpixel/forward/internal/httpx"
)

// DefaultTokenURL is Google's OAuth 2.0 token endpoint.
const DefaultTokenURL = "https://oauth2.googleapis.com/token"

// Scopes are the OAuth scopes a service account asks for: the Data Manager
// API and the Google Ads API.
var Scopes = []string{"https://www.googleapis.com/auth/datamanager", "https://www.googleapis.com/auth/adwords"}

// RefreshToken returns the token source of an OAuth 2.0 client (client id
// and secret) with a refresh token, for Destination.Tokens: access tokens
// (an hour, at Google) are fetched from tokenURL ("" means
// DefaultTokenURL) through hc and replaced before they expire by now's
// clock (nil: time.Now). A revoked or expired refresh token is a
// Permanent error wrapping forward.ErrCredentials ("Google credentials
// expired at …").
func RefreshToken(tokenURL, clientID, clientSecret, refreshToken string, hc *http.Client, now func() time.Time) forward.TokenSource {
	if tokenURL == "" {
		tokenURL = DefaultTokenURL
	}
	return httpx.NewOAuth("Google", hc, httpx.RefreshToken(tokenURL, clientID, clientSecret, refreshToken), now)
}

// serviceAccountKey is the JSON key file Google issues for a service
// account.
type serviceAccountKey struct {
	Type         string `json:"type"`
	ClientEmail  string `json:"client_email"`
	PrivateKey   string `json:"private_key"`
	PrivateKeyID string `json:"private_key_id"`
	TokenURI     string `json:"token_uri"`
}

// ServiceAccount returns the token source of a service account, for
// Destination.Tokens, from its JSON key file: each access token is fetched
// with an assertion signed by the key (RFC 7523) for Scopes, from
// tokenURL, or the key's token_uri when tokenURL is "" (DefaultTokenURL
// when both are), and replaced before it expires, like RefreshToken's.
func ServiceAccount(keyJSON []byte, tokenURL string, hc *http.Client, now func() time.Time) (forward.TokenSource, error) {
	var k serviceAccountKey
	if err := json.Unmarshal(keyJSON, &k); err != nil {
		return nil, fmt.Errorf("google: service account key: %w", err)
	}
	switch {
	case k.Type != "service_account":
		return nil, fmt.Errorf("google: service account key: type %q, want \"service_account\"", k.Type)
	case k.ClientEmail == "" || k.PrivateKey == "":
		return nil, errors.New("google: service account key: client_email and private_key are required")
	}
	if tokenURL == "" {
		tokenURL = k.TokenURI
	}
	if tokenURL == "" {
		tokenURL = DefaultTokenURL
	}
	cfg := &jwt.Config{Email: k.ClientEmail, PrivateKey: []byte(k.PrivateKey), PrivateKeyID: k.PrivateKeyID,
		Scopes: Scopes, TokenURL: tokenURL}
	// Fail now on a key that cannot sign, not at the first send.
	if _, err := jwtKey(k.PrivateKey); err != nil {
		return nil, fmt.Errorf("google: service account key: %w", err)
	}
	return httpx.NewOAuth("Google", hc, func(ctx context.Context, _ string) (*oauth2.Token, error) {
		return cfg.TokenSource(ctx).Token()
	}, now), nil
}

// jwtKey parses the PEM RSA key of a service account (PKCS #8 as Google
// issues it, or PKCS #1).
func jwtKey(pemKey string) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode([]byte(pemKey))
	if block == nil {
		return nil, errors.New("private_key is not PEM")
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("private_key: %w", err)
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, errors.New("private_key is not an RSA key")
	}
	return rk, nil
}
