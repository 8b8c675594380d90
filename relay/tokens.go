package relay

import (
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/jobpixel/jobpixel/consent"
	"github.com/jobpixel/jobpixel/forward"
	"github.com/jobpixel/jobpixel/forward/google"
	"github.com/jobpixel/jobpixel/forward/linkedin"
	"github.com/jobpixel/jobpixel/instruction"
)

// versionKey names one instruction version of a campaign.
type versionKey struct {
	campaign string
	version  uint32
}

// tokens keeps the token source of each instruction version whose
// credentials refresh (a refresh token, a Google service account), so an
// access token is fetched once and refreshed before it expires, not
// fetched per batch. Sources of versions no longer current are dropped at
// each book load (retain); a removal under an old version makes its own
// until then.
type tokens struct {
	platform consent.Platform
	hc       *http.Client
	now      func() time.Time

	mu  sync.Mutex
	src map[versionKey]forward.TokenSource
}

func newTokens(p consent.Platform, hc *http.Client, now func() time.Time) *tokens {
	return &tokens{platform: p, hc: hc, now: now, src: map[versionKey]forward.TokenSource{}}
}

// source returns the token source of version k with spec and creds, nil
// when its credentials for the platform are a static access token.
func (t *tokens) source(k versionKey, spec instruction.Spec, c instruction.Credentials) (forward.TokenSource, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s, ok := t.src[k]; ok {
		return s, nil
	}
	var s forward.TokenSource
	switch {
	case t.platform == consent.Google && spec.Google != nil && c.GoogleRefreshToken != "":
		s = google.RefreshToken(spec.Google.TokenEndpoint, c.GoogleClientID, c.GoogleClientSecret, c.GoogleRefreshToken, t.hc, t.now)
	case t.platform == consent.Google && spec.Google != nil && c.GoogleServiceAccountKey != "":
		var err error
		// The token endpoint is the instruction's (allow-listed), never
		// the key's own token_uri.
		if s, err = google.ServiceAccount([]byte(c.GoogleServiceAccountKey), spec.Google.TokenEndpoint, t.hc, t.now); err != nil {
			return nil, fmt.Errorf("instruction v%d: %w", k.version, err)
		}
	case t.platform == consent.LinkedIn && spec.LinkedIn != nil && c.LinkedInRefreshToken != "":
		s = linkedin.RefreshToken(spec.LinkedIn.TokenEndpoint, c.LinkedInClientID, c.LinkedInClientSecret, c.LinkedInRefreshToken, t.hc, t.now)
	default:
		return nil, nil
	}
	t.src[k] = s
	return s, nil
}

// retain drops the sources of versions that are not current in snap.
func (t *tokens) retain(snap *snapshot) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k := range t.src {
		if e := snap.campaigns[k.campaign]; e == nil || e.inst.Version != k.version {
			delete(t.src, k)
		}
	}
}
