package fakeserver

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"time"
)

// TokenPath is where a fake serves its OAuth 2.0 token endpoint.
const TokenPath = "/token"

// JWTBearerGrant is the grant type of a service account's signed assertion
// (RFC 7523).
const JWTBearerGrant = "urn:ietf:params:oauth:grant-type:jwt-bearer"

// Tokens is a strict fake OAuth 2.0 token endpoint, embedded by the fakes
// whose platform uses one: it answers the refresh_token grant (client id
// and secret in the form or in Basic auth) and the JWT bearer grant (an
// RS256 assertion signed by a registered service account, with iss, scope,
// aud = this endpoint's URL, iat and exp at most an hour apart), and
// issues access tokens that expire after TTL on the fake's clock. Errors
// are RFC 6749 bodies: 400 {"error":"invalid_grant",...} for an unknown,
// revoked or expired credential, 401 invalid_client for a wrong client.
type Tokens struct {
	ttl    time.Duration
	now    func() time.Time
	rotate bool

	mu       sync.Mutex
	clients  map[string]string         // client id → secret
	refresh  map[string]string         // refresh token → client id
	accounts map[string]*rsa.PublicKey // service account e-mail → key
	issued   map[string]time.Time      // access token → expiry
	scopes   []string                  // scopes of the assertions received
	requests int
}

// NewTokens returns an endpoint issuing tokens valid for ttl by now; with
// rotate, every refresh answers a new refresh token and retires the old
// one (as LinkedIn may).
func NewTokens(ttl time.Duration, now func() time.Time, rotate bool) *Tokens {
	return &Tokens{ttl: ttl, now: now, rotate: rotate, clients: map[string]string{}, refresh: map[string]string{},
		accounts: map[string]*rsa.PublicKey{}, issued: map[string]time.Time{}}
}

// AddClient registers an OAuth client and one refresh token of it.
func (t *Tokens) AddClient(id, secret, refreshToken string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.clients[id] = secret
	t.refresh[refreshToken] = id
}

// AddServiceAccount registers a service account's public key.
func (t *Tokens) AddServiceAccount(email string, key *rsa.PublicKey) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.accounts[email] = key
}

// Revoke makes a refresh token or a service account unusable: its next
// refresh is answered invalid_grant. Access tokens already issued stay
// valid until they expire.
func (t *Tokens) Revoke(credential string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.refresh, credential)
	delete(t.accounts, credential)
}

// ExpireAll ends every access token issued so far, as a platform does when
// it invalidates tokens before their expiry.
func (t *Tokens) ExpireAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for tok := range t.issued {
		t.issued[tok] = time.Time{}
	}
}

// Requests returns how many requests reached the endpoint.
func (t *Tokens) Requests() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.requests
}

// Scopes returns the scopes of the assertions received, in order.
func (t *Tokens) Scopes() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.scopes...)
}

// Accepts reports whether bearer may call the API: a token this endpoint
// issued while it has not expired; any other only if it equals static, or
// if static is empty and bearer is not.
func (t *Tokens) Accepts(bearer, static string) bool {
	t.mu.Lock()
	exp, issued := t.issued[bearer]
	t.mu.Unlock()
	if issued {
		return t.now().Before(exp)
	}
	return bearer != "" && (static == "" || bearer == static)
}

// ServeHTTP answers a token request.
func (t *Tokens) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	t.mu.Lock()
	t.requests++
	t.mu.Unlock()
	if r.Method != http.MethodPost {
		tokenError(w, http.StatusMethodNotAllowed, "invalid_request", "POST only")
		return
	}
	if err := r.ParseForm(); err != nil {
		tokenError(w, http.StatusBadRequest, "invalid_request", "malformed form")
		return
	}
	var refresh string
	switch r.PostForm.Get("grant_type") {
	case "refresh_token":
		id, secret, ok := r.BasicAuth()
		if !ok {
			id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
		}
		t.mu.Lock()
		want, known := t.clients[id]
		owner, valid := t.refresh[r.PostForm.Get("refresh_token")]
		t.mu.Unlock()
		switch {
		case !known || secret != want:
			tokenError(w, http.StatusUnauthorized, "invalid_client", "The OAuth client was not found.")
			return
		case !valid || owner != id:
			tokenError(w, http.StatusBadRequest, "invalid_grant", "Token has been expired or revoked.")
			return
		}
		if t.rotate {
			refresh = randomToken("rt")
			t.mu.Lock()
			delete(t.refresh, r.PostForm.Get("refresh_token"))
			t.refresh[refresh] = id
			t.mu.Unlock()
		}
	case JWTBearerGrant:
		if code, desc := t.checkAssertion(r.PostForm.Get("assertion"), "http://"+r.Host+r.URL.Path); code != "" {
			tokenError(w, http.StatusBadRequest, code, desc)
			return
		}
	default:
		tokenError(w, http.StatusBadRequest, "unsupported_grant_type", "grant_type must be refresh_token or "+JWTBearerGrant)
		return
	}
	access := randomToken("at")
	t.mu.Lock()
	t.issued[access] = t.now().Add(t.ttl)
	t.mu.Unlock()
	body := map[string]any{"access_token": access, "token_type": "Bearer", "expires_in": int(t.ttl / time.Second)}
	if refresh != "" {
		body["refresh_token"] = refresh
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(body)
}

// checkAssertion verifies a service account's RS256 JWT; it returns the
// RFC 6749 error code and description of the first problem, or "".
func (t *Tokens) checkAssertion(jwt, aud string) (code, desc string) {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return "invalid_request", "assertion is not a JWT"
	}
	var header struct {
		Alg string `json:"alg"`
	}
	var claims struct {
		Iss   string `json:"iss"`
		Scope string `json:"scope"`
		Aud   string `json:"aud"`
		Iat   int64  `json:"iat"`
		Exp   int64  `json:"exp"`
	}
	hb, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	cb, err2 := base64.RawURLEncoding.DecodeString(parts[1])
	sig, err3 := base64.RawURLEncoding.DecodeString(parts[2])
	if err1 != nil || err2 != nil || err3 != nil || json.Unmarshal(hb, &header) != nil || json.Unmarshal(cb, &claims) != nil {
		return "invalid_request", "assertion is not base64url JSON"
	}
	t.mu.Lock()
	key := t.accounts[claims.Iss]
	t.mu.Unlock()
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	switch {
	case header.Alg != "RS256":
		return "invalid_request", "assertion algorithm must be RS256"
	case key == nil:
		return "invalid_grant", "Invalid JWT Signature: unknown or revoked service account."
	case rsa.VerifyPKCS1v15(key, crypto.SHA256, sum[:], sig) != nil:
		return "invalid_grant", "Invalid JWT Signature."
	case claims.Aud != aud:
		return "invalid_grant", "Invalid JWT: aud must be " + aud
	case claims.Scope == "":
		return "invalid_scope", "assertion has no scope"
	case claims.Exp <= claims.Iat || claims.Exp-claims.Iat > 3600:
		return "invalid_grant", "Invalid JWT: exp must be after iat, by at most an hour"
	}
	t.mu.Lock()
	t.scopes = append(t.scopes, claims.Scope)
	t.mu.Unlock()
	return "", ""
}

func tokenError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}

func randomToken(prefix string) string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}
