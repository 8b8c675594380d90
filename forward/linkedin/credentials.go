package linkedin

import (
	"net/http"
	"time"

	"github.com/jobpixel/jobpixel/forward"
	"github.com/jobpixel/jobpixel/forward/internal/httpx"
)

// DefaultTokenURL is LinkedIn's OAuth 2.0 token endpoint.
const DefaultTokenURL = "https://www.linkedin.com/oauth/v2/accessToken"

// RefreshToken returns the token source of a LinkedIn app (client id and
// secret) with a refresh token, for Destination.Tokens: access tokens
// (about 60 days) are fetched from tokenURL ("" means DefaultTokenURL)
// through hc and replaced before they expire by now's clock (nil:
// time.Now); a refresh token LinkedIn rotates is used from then on. A
// revoked or expired refresh token (about a year) is a Permanent error
// wrapping forward.ErrCredentials ("LinkedIn credentials expired at …").
func RefreshToken(tokenURL, clientID, clientSecret, refreshToken string, hc *http.Client, now func() time.Time) forward.TokenSource {
	if tokenURL == "" {
		tokenURL = DefaultTokenURL
	}
	return httpx.NewOAuth("LinkedIn", hc, httpx.RefreshToken(tokenURL, clientID, clientSecret, refreshToken), now)
}
