package relay

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/jobpixel/jobpixel/consent"
	"github.com/jobpixel/jobpixel/forward"
	"github.com/jobpixel/jobpixel/forward/google"
	"github.com/jobpixel/jobpixel/forward/linkedin"
	"github.com/jobpixel/jobpixel/instruction"
	"github.com/jobpixel/jobpixel/internal/store"
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

// credentialsFailed reports whether err says the destination's
// credentials no longer work: a refresh the token endpoint refused
// (forward.ErrCredentials), a 401 (for credentials that refresh, one that
// survived a fresh token), or Meta's code 190 (invalid or expired access
// token). Only new credentials fix it, nothing is wrong with the items:
// they are held, never dead-lettered.
func credentialsFailed(err error) bool {
	if errors.Is(err, forward.ErrCredentials) {
		return true
	}
	var fe *forward.Error
	return errors.As(err, &fe) && (fe.Status == http.StatusUnauthorized || fe.Code == "190")
}

// platformNames name the platforms in statuses.
var platformNames = map[consent.Platform]string{consent.Google: "Google", consent.Meta: "Meta", consent.LinkedIn: "LinkedIn"}

// credentialsStatus is the instruction status of a credentials failure
// err of platform p, e.g. "Google credentials expired at …; send new
// credentials".
func credentialsStatus(p consent.Platform, err error) string {
	var fe *forward.Error
	switch {
	case errors.Is(err, forward.ErrCredentials) && errors.As(err, &fe):
		why, _, _ := strings.Cut(fe.Reason, ";") // "Google credentials expired at …"
		return why + "; send new credentials"
	case errors.As(err, &fe) && fe.Code == "190" && fe.Status != http.StatusUnauthorized:
		return platformNames[p] + " refused the access token (code 190: invalid or expired); send new credentials"
	}
	return platformNames[p] + " refused the credentials (HTTP 401); send new credentials"
}

// credentials keeps the credentials state the relay reported last, per
// destination (logged) and per instruction version (forward_status), so
// each is reported once per change.
type credentials struct {
	mu      sync.Mutex
	dest    map[string]bool       // versionKey|destination → failing
	version map[versionKey]string // status written, "" for none
}

// note records how a send to destination dest of version k of clientID's
// campaign went: status is credentialsStatus of a credentials failure,
// "" when the credentials worked. A destination starting to fail is
// logged once as a warning; a version's change of status is written to
// forward_status (retried like every record; if ctx ends first, the next
// send writes it).
func (r *Relay) note(ctx context.Context, k versionKey, clientID, dest, status string, now time.Time) {
	c := &r.creds
	c.mu.Lock()
	dk := fmt.Sprintf("%s|%d|%s", k.campaign, k.version, dest)
	if failing := status != ""; failing != c.dest[dk] {
		if failing {
			r.log.Warn("credentials refused: holding the destination's work until new credentials arrive",
				"campaign", k.campaign, "version", k.version, "destination", dest, "status", status)
			c.dest[dk] = true
		} else {
			delete(c.dest, dk)
		}
	}
	old, known := c.version[k]
	c.mu.Unlock()
	if old == status && (known || status == "") {
		return
	}
	row := store.ForwardStatus{At: now, Seq: uint64(now.UnixNano()), ClientID: clientID, CampaignID: k.campaign,
		Platform: r.cfg.Platform.String(), InstructionVersion: k.version, Status: status}
	if r.record(ctx, "forward status", func(c context.Context) error { return r.st.InsertForwardStatus(c, []store.ForwardStatus{row}) }) {
		c.mu.Lock()
		c.version[k] = status
		c.mu.Unlock()
	}
}
