// Package meta forwards conversions to the Meta Conversions API and
// audience members to Meta Custom Audiences.
//
// A Client's zero value is usable: it talks to graph.facebook.com with API
// version v25.0. Destination.ID is the pixel id (conversions) or the custom
// audience id (audiences); Destination.Token is the access token, sent as
// the access_token query parameter and kept out of error text.
package meta

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jobpixel/jobpixel/forward"
	"github.com/jobpixel/jobpixel/forward/internal/httpx"
)

// Defaults and platform limits.
const (
	DefaultBaseURL = "https://graph.facebook.com"
	DefaultVersion = "v25.0"
	// MaxEvents is the most events Meta accepts per Conversions API request.
	MaxEvents = 1000
	// MaxRows is the most rows Meta accepts per audience request.
	MaxRows = 10000
	// DefaultEventTimeout is Meta's recommended client time-out for the
	// Conversions API.
	DefaultEventTimeout = 1500 * time.Millisecond
	// DefaultAudienceTimeout bounds one audience request (10,000 rows).
	DefaultAudienceTimeout = 30 * time.Second
	// EventMaxAge is how old an event may be: Meta rejects the whole
	// request if one event_time is older than 7 days.
	EventMaxAge = 7 * 24 * time.Hour
	// DefaultAgeMargin is subtracted from EventMaxAge so an event that is
	// nearly 7 days old is not accepted locally and then rejected by Meta
	// after retries.
	DefaultAgeMargin = 15 * time.Minute
	// MaxClockSkew is how far in the future an event_time may be.
	MaxClockSkew = 10 * time.Minute
)

// Client sends to Meta. Fields are read-only once the Client is in use; the
// zero value of each field means the documented default.
type Client struct {
	// BaseURL is the Graph API root; "" means DefaultBaseURL.
	BaseURL string
	// Version is the Graph API version, e.g. "v25.0"; "" means
	// DefaultVersion.
	Version string
	// HTTPClient makes the requests; nil means http.DefaultClient.
	HTTPClient *http.Client
	// EventTimeout bounds one Conversions API attempt; 0 means
	// DefaultEventTimeout.
	EventTimeout time.Duration
	// AudienceTimeout bounds one audience attempt; 0 means
	// DefaultAudienceTimeout.
	AudienceTimeout time.Duration
	// Retry is applied to every request.
	Retry forward.RetryPolicy
	// AgeMargin: events older than EventMaxAge-AgeMargin are refused
	// locally. 0 means DefaultAgeMargin; negative means no margin.
	AgeMargin time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// SessionID returns a new positive audience upload session id; nil
	// means 63 random bits from crypto/rand.
	SessionID func() int64
}

var (
	_ forward.ConversionSender = (*Client)(nil)
	_ forward.AudienceSender   = (*Client)(nil)
)

func (c *Client) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Client) endpoint(id, edge string, token forward.Secret) string {
	base := c.BaseURL
	if base == "" {
		base = DefaultBaseURL
	}
	version := c.Version
	if version == "" {
		version = DefaultVersion
	}
	return strings.TrimRight(base, "/") + "/" + url.PathEscape(version) + "/" + url.PathEscape(id) + "/" + edge +
		"?access_token=" + url.QueryEscape(string(token))
}

func (c *Client) newSessionID() int64 {
	if c.SessionID != nil {
		return c.SessionID()
	}
	var b [8]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			panic(fmt.Sprintf("meta: crypto/rand: %v", err))
		}
		if id := int64(binary.BigEndian.Uint64(b[:]) >> 1); id > 0 {
			return id
		}
	}
}

// checkDest validates what every call needs: a numeric object id and a
// token.
func checkDest(dest forward.Destination, what string) error {
	if dest.ID == "" || strings.Trim(dest.ID, "0123456789") != "" {
		return forward.Rejectf("meta: destination %s id %q must be numeric", what, dest.ID)
	}
	if dest.Token == "" {
		return forward.Rejectf("meta: destination has no access token")
	}
	return nil
}

// apiError is Meta's error envelope.
type apiError struct {
	Error *struct {
		Message        string `json:"message"`
		Type           string `json:"type"`
		Code           int    `json:"code"`
		ErrorSubcode   int    `json:"error_subcode"`
		IsTransient    bool   `json:"is_transient"`
		ErrorUserTitle string `json:"error_user_title"`
		ErrorUserMsg   string `json:"error_user_msg"`
		FbtraceID      string `json:"fbtrace_id"`
	} `json:"error"`
}

// Code lists from the platform reference.
var (
	permanentCodes = map[int]bool{100: true, 190: true, 3: true, 294: true, 1487301: true, 1487366: true, 2650: true, 105: true, 2655: true}
	retryCodes     = map[int]bool{1: true, 2: true, 341: true, 368: true, 5000: true, 21009: true}
	throttleCodes  = map[int]bool{4: true, 17: true, 80003: true, 613: true}
)

// Subcodes of 2650 (custom audience upload).
const (
	SubcodeUpdateInProgress = 1870145 // retry
	SubcodeSessionTimedOut  = 1870158
)

// KindOf classifies a Meta error code/subcode: the throttle codes (4, 17,
// 80003, 613) are Throttled; 2650/1870145 and the retry codes (1, 2, 341,
// 368, 5000, 21009) Retryable; the do-not-retry codes (100, 190, 3, 294,
// 1487301, 1487366, 2650, 105, 2655) Permanent. Other codes are Retryable if
// the platform flagged them is_transient or the HTTP status is 5xx,
// Throttled on 429, else Permanent. The HTTP status never overrides a listed
// code.
func KindOf(status, code, subcode int, transient bool) forward.Kind {
	switch {
	case throttleCodes[code]:
		return forward.Throttled
	case code == 2650 && subcode == SubcodeUpdateInProgress:
		return forward.Retryable
	case permanentCodes[code]:
		return forward.Permanent
	case retryCodes[code], transient:
		return forward.Retryable
	}
	return forward.ClassifyStatus(status)
}

// classify maps a non-2xx response (or a 2xx carrying an error) to a
// *forward.Error, once.
func (c *Client) classify(resp *httpx.Response) error {
	fe := &forward.Error{
		Status:     resp.Status,
		RetryAfter: forward.ParseRetryAfter(resp.Header.Get("Retry-After"), c.now()),
	}
	var env apiError
	if err := json.Unmarshal(resp.Body, &env); err != nil || env.Error == nil {
		fe.Kind = forward.ClassifyStatus(resp.Status)
		fe.Reason = "unexpected response: " + snippet(resp.Body)
		return fe
	}
	e := env.Error
	fe.Kind = KindOf(resp.Status, e.Code, e.ErrorSubcode, e.IsTransient)
	fe.Code = strconv.Itoa(e.Code)
	if e.ErrorSubcode != 0 {
		fe.Code += "/" + strconv.Itoa(e.ErrorSubcode)
	}
	reason := e.Message
	if e.ErrorUserTitle != "" {
		reason += ": " + e.ErrorUserTitle
	}
	if e.ErrorUserMsg != "" {
		reason += ": " + e.ErrorUserMsg
	}
	if e.FbtraceID != "" {
		reason += " (fbtrace_id " + e.FbtraceID + ")"
	}
	fe.Reason = reason
	return fe
}

// send makes one request and returns the 2xx response, or the classified
// error (a 2xx carrying an error envelope is an error too).
func (c *Client) send(ctx context.Context, method, endpoint string, body []byte, timeout time.Duration) (*httpx.Response, error) {
	resp, err := httpx.Do(ctx, c.HTTPClient, httpx.Request{
		Method: method, URL: endpoint, Header: httpx.JSONHeader(), Body: body,
	}, timeout)
	if err != nil {
		return nil, err
	}
	if resp.Status < 200 || resp.Status > 299 {
		return resp, c.classify(resp)
	}
	var env apiError
	if json.Unmarshal(resp.Body, &env) == nil && env.Error != nil {
		return resp, c.classify(resp)
	}
	return resp, nil
}

func snippet(b []byte) string {
	const max = 200
	s := strings.TrimSpace(string(b))
	if len(s) > max {
		s = s[:max] + "..."
	}
	if s == "" {
		return "(empty body)"
	}
	return s
}
