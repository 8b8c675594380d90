package httpx

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/jobpixel/jobpixel/forward"
)

// RefreshBefore is how long before its expiry an access token is replaced:
// a request never leaves with a token that may expire on the way.
const RefreshBefore = 5 * time.Minute

// tokenTimeout bounds one request to a token endpoint.
const tokenTimeout = 30 * time.Second

// Fetch asks a token endpoint for a new access token; ctx carries the HTTP
// client (oauth2.HTTPClient). refresh is the refresh token of the last
// answer ("" before the first), for endpoints that rotate it.
type Fetch func(ctx context.Context, refresh string) (*oauth2.Token, error)

// OAuth is a forward.TokenSource over an OAuth 2.0 token endpoint (built
// with golang.org/x/oauth2): it keeps the last access token and fetches a
// new one when the kept one expires within RefreshBefore or the platform
// refused it (Invalidate). One fetch at a time; concurrent callers wait
// for it.
type OAuth struct {
	platform string // "Google", "LinkedIn": names the credentials in errors
	hc       *http.Client
	fetch    Fetch
	now      func() time.Time

	mu      sync.Mutex
	tok     *oauth2.Token
	refresh string    // latest refresh token (rotated ones included)
	expired time.Time // when the last token held expired (or was refused), for the error
}

// NewOAuth returns a source that fetches with fetch through hc (nil: the
// default transport, never following a redirect) and tells time with now
// (nil: time.Now).
func NewOAuth(platform string, hc *http.Client, fetch Fetch, now func() time.Time) *OAuth {
	if hc == nil {
		hc = defaultClient
	}
	c := *hc
	c.CheckRedirect = noRedirect
	if c.Timeout == 0 {
		c.Timeout = tokenTimeout
	}
	if now == nil {
		now = time.Now
	}
	return &OAuth{platform: platform, hc: &c, fetch: fetch, now: now}
}

// Token returns the kept access token, or a new one when it expires within
// RefreshBefore (if that fetch fails, the kept token while it has not
// expired). A refused fetch is a Permanent *forward.Error wrapping
// forward.ErrCredentials; a failed one (transport, 5xx) is Retryable, 429
// Throttled.
func (o *OAuth) Token(ctx context.Context) (forward.Secret, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.tok != nil && (o.tok.Expiry.IsZero() || o.now().Add(RefreshBefore).Before(o.tok.Expiry)) {
		return forward.Secret(o.tok.AccessToken), nil
	}
	tok, err := o.fetch(context.WithValue(ctx, oauth2.HTTPClient, o.hc), o.refresh)
	if err != nil {
		if o.tok != nil && o.now().Before(o.tok.Expiry) {
			// Early refresh failed: the kept token still works.
			return forward.Secret(o.tok.AccessToken), nil
		}
		return "", o.classify(ctx, err)
	}
	if tok.AccessToken == "" {
		return "", &forward.Error{Kind: forward.Retryable, Reason: o.platform + " token endpoint answered without an access token"}
	}
	if !tok.Expiry.IsZero() {
		// x/oauth2 sets Expiry by time.Now; keep the lifetime, on o.now.
		tok.Expiry = o.now().Add(time.Until(tok.Expiry).Round(time.Second))
	}
	if tok.RefreshToken != "" {
		o.refresh = tok.RefreshToken
	}
	o.tok = tok
	if !tok.Expiry.IsZero() {
		o.expired = tok.Expiry
	}
	return forward.Secret(tok.AccessToken), nil
}

// Invalidate drops tok if it is the kept token, so the next Token fetches;
// the credentials count as expired now.
func (o *OAuth) Invalidate(tok forward.Secret) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.tok != nil && o.tok.AccessToken == string(tok) {
		o.tok = nil
		o.expired = o.now()
	}
}

// classify maps a failed fetch to a *forward.Error. The token endpoint's
// error code and description are kept; no credential is.
func (o *OAuth) classify(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%s token refresh: %w", o.platform, cerr)
	}
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.Response == nil {
		return &forward.Error{Kind: forward.Retryable, Reason: o.platform + " token endpoint unreachable", Err: redact(err)}
	}
	if re.ErrorCode == "" {
		// x/oauth2/jwt leaves the RFC 6749 error body unparsed.
		var body struct {
			Code string `json:"error"`
			Desc string `json:"error_description"`
		}
		if json.Unmarshal(re.Body, &body) == nil {
			re.ErrorCode, re.ErrorDescription = body.Code, body.Desc
		}
	}
	status := re.Response.StatusCode
	switch {
	case status == http.StatusTooManyRequests:
		return &forward.Error{Kind: forward.Throttled, Status: status, Code: re.ErrorCode,
			RetryAfter: forward.ParseRetryAfter(re.Response.Header.Get("Retry-After"), o.now()),
			Reason:     o.platform + " token endpoint throttled the refresh"}
	case status >= 500:
		return &forward.Error{Kind: forward.Retryable, Status: status, Code: re.ErrorCode,
			Reason: fmt.Sprintf("%s token endpoint failed (status %d)", o.platform, status)}
	}
	when := o.platform + " credentials expired or were revoked"
	if !o.expired.IsZero() {
		when = o.platform + " credentials expired at " + o.expired.UTC().Format(time.RFC3339)
	}
	detail := re.ErrorCode
	if re.ErrorDescription != "" {
		detail += ": " + re.ErrorDescription
	}
	return &forward.Error{Kind: forward.Permanent, Status: status, Code: re.ErrorCode,
		Reason: fmt.Sprintf("%s; the token endpoint refused to refresh them (%s)", when, detail),
		Err:    forward.ErrCredentials}
}

// RefreshToken fetches with an OAuth 2.0 client's refresh token (client id
// and secret sent in the form, as Google and LinkedIn accept), using the
// rotated refresh token once the endpoint has answered one.
func RefreshToken(tokenURL, clientID, clientSecret, refreshToken string) Fetch {
	cfg := &oauth2.Config{ClientID: clientID, ClientSecret: clientSecret,
		Endpoint: oauth2.Endpoint{TokenURL: tokenURL, AuthStyle: oauth2.AuthStyleInParams}}
	return func(ctx context.Context, rotated string) (*oauth2.Token, error) {
		rt := refreshToken
		if rotated != "" {
			rt = rotated
		}
		return cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: rt}).Token()
	}
}

// DoBearer is Do with "Authorization: Bearer" set from dest: dest.Tokens'
// token when set, else dest.Token. When the platform answers 401 to a token
// from dest.Tokens, the token is invalidated and the attempt is made once
// more with a fresh one; the second answer is returned, whatever it is.
// A failed refresh is returned as Token's error.
func DoBearer(ctx context.Context, hc *http.Client, r Request, timeout time.Duration, dest forward.Destination) (*Response, error) {
	if dest.Tokens == nil {
		return Do(ctx, hc, withBearer(r, dest.Token), timeout)
	}
	for try := 0; ; try++ {
		tok, err := dest.Tokens.Token(ctx)
		if err != nil {
			return nil, err
		}
		resp, err := Do(ctx, hc, withBearer(r, tok), timeout)
		if err != nil || resp.Status != http.StatusUnauthorized || try == 1 {
			return resp, err
		}
		dest.Tokens.Invalidate(tok)
	}
}

// withBearer returns r with its own header map carrying the token.
func withBearer(r Request, tok forward.Secret) Request {
	h := r.Header.Clone()
	if h == nil {
		h = http.Header{}
	}
	h.Set("Authorization", "Bearer "+string(tok))
	r.Header = h
	return r
}
