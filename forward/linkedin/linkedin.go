// Package linkedin forwards conversions to the LinkedIn Conversions API
// (POST /rest/conversionEvents) and audience members to DMP segments
// (POST /rest/dmpSegments/{id}/users), always as BATCH_CREATE requests.
//
// A Client's zero value is usable. Every request carries
// "Authorization: Bearer {Destination.Token}" (or the token of
// Destination.Tokens: a refresh token, see RefreshToken),
// "LinkedIn-Version" and "X-Restli-Protocol-Version: 2.0.0". LinkedIn identifies users by
// SHA256_EMAIL (Identity.Email: trimmed, lowercased, SHA-256) and
// LINKEDIN_FIRST_PARTY_ADS_TRACKING_UUID (Conversion.LiFatID).
package linkedin

import (
	"context"
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

// Defaults and limits.
const (
	DefaultBaseURL = "https://api.linkedin.com"
	// DefaultVersion is the LinkedIn-Version (YYYYMM) sent when
	// Client.Version is empty. LinkedIn sunsets versions after about a
	// year; configure it.
	DefaultVersion = "202610"
	// DefaultMaxEvents is the batch size for conversion events: 5,000 per
	// the platform reference, which marks it unconfirmed.
	DefaultMaxEvents = 5000
	// DefaultMaxSegmentUsers is the batch size for DMP segment users; the
	// reference gives no limit, so the conversion limit is reused
	// (unconfirmed).
	DefaultMaxSegmentUsers = 5000
	// EventMaxAge: conversionHappenedAt may be at most 90 days old.
	EventMaxAge = 90 * 24 * time.Hour
	// DefaultAgeMargin is subtracted from EventMaxAge for the local check.
	DefaultAgeMargin = 15 * time.Minute
	// MaxClockSkew is how far in the future a conversion may be.
	MaxClockSkew = 10 * time.Minute
	// DefaultTimeout bounds one attempt.
	DefaultTimeout = 30 * time.Second

	conversionURNPrefix = "urn:lla:llaPartnerConversion:"
)

// User id types.
const (
	IDTypeEmail   = "SHA256_EMAIL"
	IDTypeLiFatID = "LINKEDIN_FIRST_PARTY_ADS_TRACKING_UUID"
)

// Client sends to LinkedIn. Fields are read-only once in use; zero values
// mean the documented defaults.
type Client struct {
	// BaseURL is the API root; "" means DefaultBaseURL.
	BaseURL string
	// Version is the LinkedIn-Version header (YYYYMM); "" means
	// DefaultVersion.
	Version string
	// MaxEvents is the conversion batch size; 0 means DefaultMaxEvents.
	MaxEvents int
	// MaxSegmentUsers is the DMP batch size; 0 means
	// DefaultMaxSegmentUsers.
	MaxSegmentUsers int
	// HTTPClient makes the requests; nil means http.DefaultClient.
	HTTPClient *http.Client
	// Timeout bounds one attempt; 0 means DefaultTimeout.
	Timeout time.Duration
	// Retry is applied to every request.
	Retry forward.RetryPolicy
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// AgeMargin: conversions older than EventMaxAge-AgeMargin are refused
	// locally. 0 means DefaultAgeMargin; negative means none.
	AgeMargin time.Duration
}

var (
	_ forward.ConversionSender = (*Client)(nil)
	_ forward.AudienceSender   = (*Client)(nil)
)

type userID struct {
	IDType  string `json:"idType"`
	IDValue string `json:"idValue"`
}

type money struct {
	CurrencyCode string `json:"currencyCode"`
	Amount       string `json:"amount"`
}

type conversionEvent struct {
	Conversion           string `json:"conversion"`
	ConversionHappenedAt int64  `json:"conversionHappenedAt"`
	ConversionValue      *money `json:"conversionValue,omitempty"`
	EventID              string `json:"eventId"`
	User                 struct {
		UserIDs []userID `json:"userIds"`
	} `json:"user"`
}

type segmentUser struct {
	Action  string   `json:"action"`
	UserIDs []userID `json:"userIds"`
}

type batchRequest[T any] struct {
	Elements []T `json:"elements"`
}

type batchResponse struct {
	Elements []struct {
		Status int `json:"status"`
		Error  *struct {
			Status           int    `json:"status"`
			ServiceErrorCode int    `json:"serviceErrorCode"`
			Code             string `json:"code"`
			Message          string `json:"message"`
		} `json:"error"`
	} `json:"elements"`
}

// apiError is LinkedIn's error envelope.
type apiError struct {
	Status           int    `json:"status"`
	ServiceErrorCode int    `json:"serviceErrorCode"`
	Code             string `json:"code"`
	Message          string `json:"message"`
}

func (c *Client) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// KindOf classifies a LinkedIn error status: 429 Throttled; 5xx Retryable;
// 404 Retryable for DMP segment uploads (a new segment answers 404 for a
// minute or two) and Permanent otherwise; every other status (400, 401,
// 403, 422, 426 sunset version, ...) Permanent.
func KindOf(status int, segment bool) forward.Kind {
	if status == http.StatusNotFound && segment {
		return forward.Retryable
	}
	return forward.ClassifyStatus(status)
}

func (c *Client) classify(resp *httpx.Response, segment bool) error {
	fe := &forward.Error{
		Kind:       KindOf(resp.Status, segment),
		Status:     resp.Status,
		RetryAfter: forward.ParseRetryAfter(resp.Header.Get("Retry-After"), c.now()),
	}
	var e apiError
	if err := json.Unmarshal(resp.Body, &e); err != nil || (e.Message == "" && e.Code == "") {
		fe.Reason = "unexpected response: " + snippet(resp.Body)
		return fe
	}
	fe.Code = e.Code
	if fe.Code == "" && e.ServiceErrorCode != 0 {
		fe.Code = strconv.Itoa(e.ServiceErrorCode)
	}
	fe.Reason = e.Message
	if resp.Status == http.StatusUpgradeRequired {
		fe.Reason = "LinkedIn-Version no longer supported: " + e.Message
	}
	return fe
}

// batch posts a BATCH_CREATE and maps the per-element statuses.
func (c *Client) batch(ctx context.Context, endpoint string, dest forward.Destination, body []byte, n int, segment bool) (forward.Outcome, error) {
	version := c.Version
	if version == "" {
		version = DefaultVersion
	}
	h := httpx.JSONHeader()
	h.Set("LinkedIn-Version", version)
	h.Set("X-Restli-Protocol-Version", "2.0.0")
	h.Set("X-RestLi-Method", "BATCH_CREATE")
	resp, err := httpx.DoBearer(ctx, c.HTTPClient, httpx.Request{Method: http.MethodPost, URL: endpoint, Header: h, Body: body},
		httpx.Timeout(c.Timeout, DefaultTimeout), dest)
	if err != nil {
		return forward.Outcome{}, err
	}
	if resp.Status < 200 || resp.Status > 299 {
		return forward.Outcome{}, c.classify(resp, segment)
	}
	out := forward.Outcome{Status: resp.Status}
	var br batchResponse
	if err := json.Unmarshal(resp.Body, &br); err != nil || len(br.Elements) != n {
		return out, &forward.Error{Kind: forward.Permanent, Status: resp.Status,
			Reason: fmt.Sprintf("linkedin: batch response does not have one status per element (sent %d): %s", n, snippet(resp.Body))}
	}
	for i, el := range br.Elements {
		if el.Status >= 200 && el.Status <= 299 {
			continue
		}
		fe := &forward.Error{Kind: forward.ClassifyStatus(el.Status), Status: el.Status, Reason: "linkedin: element refused"}
		if el.Error != nil {
			fe.Code = el.Error.Code
			if fe.Code == "" && el.Error.ServiceErrorCode != 0 {
				fe.Code = strconv.Itoa(el.Error.ServiceErrorCode)
			}
			if el.Error.Message != "" {
				fe.Reason = "linkedin: element refused: " + el.Error.Message
			}
		}
		out.Failed = append(out.Failed, forward.ItemError{Index: i, Err: fe})
	}
	return out, nil
}

// conversionURN accepts a conversion rule id or its URN.
func conversionURN(id string) (string, bool) {
	num := strings.TrimPrefix(id, conversionURNPrefix)
	if num == "" || strings.Trim(num, "0123456789") != "" {
		return "", false
	}
	return conversionURNPrefix + num, true
}

// SendConversions sends conversions for the conversion rule dest.ID (id or
// urn:lla:llaPartnerConversion URN) as BATCH_CREATE requests of at most
// MaxEvents elements: conversionHappenedAt in epoch milliseconds, eventId =
// Conversion.ID (the dedup key), conversionValue with the amount as a
// string, and userIds SHA256_EMAIL (Identity.Email) and
// LINKEDIN_FIRST_PARTY_ADS_TRACKING_UUID (LiFatID).
//
// LinkedIn answers a batch with one status per element; refused elements
// are per-item failures, classified by their status (they are not retried
// within this call: requeue the Retryable/Throttled ones). Conversions
// older than EventMaxAge-AgeMargin, without an id or without any user id
// are refused locally.
func (c *Client) SendConversions(ctx context.Context, dest forward.Destination, conversions []forward.Conversion) (forward.Result, error) {
	reject := func(err error) (forward.Result, error) {
		res := forward.RejectAll(len(conversions), func(i int) string { return conversions[i].ID }, err)
		return res, res.Err()
	}
	urn, ok := conversionURN(dest.ID)
	if !ok {
		return reject(forward.Rejectf("linkedin: destination %q is not a conversion rule id or urn", dest.ID))
	}
	if !dest.HasToken() {
		return reject(forward.Rejectf("linkedin: destination has no access token"))
	}
	size := c.MaxEvents
	if size <= 0 {
		size = DefaultMaxEvents
	}
	endpoint := c.url("/rest/conversionEvents")
	now := c.now()
	margin := c.AgeMargin
	if margin == 0 {
		margin = DefaultAgeMargin
	} else if margin < 0 {
		margin = 0
	}
	b := forward.Batcher[forward.Conversion]{
		Size:  size,
		Retry: c.Retry,
		ID:    func(cv forward.Conversion) string { return cv.ID },
		Check: func(cv forward.Conversion) error {
			switch {
			case cv.ID == "":
				return forward.Rejectf("linkedin: conversion has no id (eventId)")
			case cv.Time.IsZero():
				return forward.Rejectf("linkedin: conversion has no time")
			case now.Sub(cv.Time) > EventMaxAge-margin:
				return forward.Rejectf("linkedin: conversionHappenedAt %s is older than 90 days", cv.Time.UTC().Format(time.RFC3339))
			case cv.Time.Sub(now) > MaxClockSkew:
				return forward.Rejectf("linkedin: conversionHappenedAt %s is in the future", cv.Time.UTC().Format(time.RFC3339))
			case cv.User.Email == "" && cv.LiFatID == "":
				return forward.Rejectf("linkedin: conversion has neither an e-mail hash nor a li_fat_id")
			}
			if err := cv.User.Check(); err != nil {
				return err
			}
			return cv.Value.Check()
		},
		Send: func(ctx context.Context, _ forward.Batch, items []forward.Conversion) (forward.Outcome, error) {
			req := batchRequest[conversionEvent]{Elements: make([]conversionEvent, len(items))}
			for i, cv := range items {
				ev := conversionEvent{Conversion: urn, ConversionHappenedAt: cv.Time.UnixMilli(), EventID: cv.ID}
				if cv.User.Email != "" {
					ev.User.UserIDs = append(ev.User.UserIDs, userID{IDType: IDTypeEmail, IDValue: cv.User.Email})
				}
				if cv.LiFatID != "" {
					ev.User.UserIDs = append(ev.User.UserIDs, userID{IDType: IDTypeLiFatID, IDValue: cv.LiFatID})
				}
				if !cv.Value.IsZero() {
					ev.ConversionValue = &money{CurrencyCode: cv.Value.Currency, Amount: cv.Value.Amount}
				}
				req.Elements[i] = ev
			}
			body, err := json.Marshal(req)
			if err != nil {
				return forward.Outcome{}, &forward.Error{Kind: forward.Permanent, Reason: "linkedin: encode events", Err: err}
			}
			return c.batch(ctx, endpoint, dest, body, len(items), false)
		},
	}
	res := b.Run(ctx, conversions)
	return res, res.Err()
}

// AddMembers adds members (by SHA256_EMAIL) to the DMP segment dest.ID.
// A 404 (a segment that is still being created) is retried. Refused
// elements are per-item failures. Members without Identity.Email are
// refused locally.
func (c *Client) AddMembers(ctx context.Context, dest forward.Destination, members []forward.Member) (forward.Result, error) {
	return c.segment(ctx, "ADD", dest, members)
}

// RemoveMembers removes members from the DMP segment dest.ID; see
// AddMembers.
func (c *Client) RemoveMembers(ctx context.Context, dest forward.Destination, members []forward.Member) (forward.Result, error) {
	return c.segment(ctx, "REMOVE", dest, members)
}

func (c *Client) segment(ctx context.Context, action string, dest forward.Destination, members []forward.Member) (forward.Result, error) {
	reject := func(err error) (forward.Result, error) {
		res := forward.RejectAll(len(members), func(i int) string { return members[i].ID }, err)
		return res, res.Err()
	}
	if dest.ID == "" || strings.Trim(dest.ID, "0123456789") != "" {
		return reject(forward.Rejectf("linkedin: segment id %q is not numeric", dest.ID))
	}
	if !dest.HasToken() {
		return reject(forward.Rejectf("linkedin: destination has no access token"))
	}
	size := c.MaxSegmentUsers
	if size <= 0 {
		size = DefaultMaxSegmentUsers
	}
	endpoint := c.url("/rest/dmpSegments/" + url.PathEscape(dest.ID) + "/users")
	b := forward.Batcher[forward.Member]{
		Size:  size,
		Retry: c.Retry,
		ID:    func(m forward.Member) string { return m.ID },
		Check: func(m forward.Member) error {
			if m.User.Email == "" {
				return forward.Rejectf("linkedin: member has no e-mail hash")
			}
			return m.User.Check()
		},
		Send: func(ctx context.Context, _ forward.Batch, items []forward.Member) (forward.Outcome, error) {
			req := batchRequest[segmentUser]{Elements: make([]segmentUser, len(items))}
			for i, m := range items {
				req.Elements[i] = segmentUser{Action: action, UserIDs: []userID{{IDType: IDTypeEmail, IDValue: m.User.Email}}}
			}
			body, err := json.Marshal(req)
			if err != nil {
				return forward.Outcome{}, &forward.Error{Kind: forward.Permanent, Reason: "linkedin: encode segment users", Err: err}
			}
			return c.batch(ctx, endpoint, dest, body, len(items), true)
		},
	}
	res := b.Run(ctx, members)
	return res, res.Err()
}

func (c *Client) url(path string) string {
	base := c.BaseURL
	if base == "" {
		base = DefaultBaseURL
	}
	return strings.TrimRight(base, "/") + path
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
