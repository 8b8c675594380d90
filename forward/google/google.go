// Package google forwards to Google: audience members and conversion
// events through the Data Manager API (DataManager), and click conversions
// through the Google Ads API uploadClickConversions method (Ads).
//
// Both clients are usable as zero values and send
// "Authorization: Bearer {Destination.Token}", or the token of
// Destination.Tokens when set: credentials that refresh (RefreshToken,
// ServiceAccount), refreshed before they expire and, after a 401, once
// more for the same request. Destination.Account is the
// operating customer id and Destination.ID the product destination (user
// list or conversion action) id; dashes in ids are stripped.
//
// Identifiers sent to Google are Identity.GoogleEmail and
// Identity.GooglePhone only (Google's normalisation), hex-encoded
// ("encoding":"HEX"); an item with only Meta-normalised hashes is refused
// locally rather than sent with the wrong normalisation.
package google

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/jobpixel/jobpixel/forward"
	"github.com/jobpixel/jobpixel/forward/internal/httpx"
)

// Limits, from the platform reference.
const (
	// EventMaxAge is the oldest conversion the clients send (Google Ads
	// click-through conversion windows are at most 90 days).
	EventMaxAge = 90 * 24 * time.Hour
	// DefaultAgeMargin is subtracted from EventMaxAge so that an event
	// accepted locally is not rejected after retries.
	DefaultAgeMargin = 15 * time.Minute
	// MaxClockSkew is how far in the future a conversion may be.
	MaxClockSkew = 10 * time.Minute
	// DefaultTimeout bounds one request attempt.
	DefaultTimeout = 60 * time.Second
)

// Consent values of the Data Manager API.
const (
	ConsentGranted = "CONSENT_GRANTED"
	ConsentDenied  = "CONSENT_DENIED"
)

// apiError is Google's error envelope.
type apiError struct {
	Error *struct {
		Code    int               `json:"code"`
		Message string            `json:"message"`
		Status  string            `json:"status"`
		Details []json.RawMessage `json:"details"`
	} `json:"error"`
}

type errorDetail struct {
	Type            string `json:"@type"`
	RetryDelay      string `json:"retryDelay"`
	FieldViolations []struct {
		Field       string `json:"field"`
		Description string `json:"description"`
		Reason      string `json:"reason"`
	} `json:"fieldViolations"`
	Errors []adsError `json:"errors"`
}

type adsError struct {
	ErrorCode map[string]string `json:"errorCode"`
	Message   string            `json:"message"`
	Location  *struct {
		FieldPathElements []struct {
			FieldName string `json:"fieldName"`
			Index     *int   `json:"index"`
		} `json:"fieldPathElements"`
	} `json:"location"`
}

// code returns e.g. "CLICK_NOT_FOUND" for {"conversionUploadError":"CLICK_NOT_FOUND"}.
func (e adsError) code() string {
	for _, v := range e.ErrorCode {
		return v
	}
	return ""
}

// KindOf classifies a Google canonical status: ABORTED and UNAVAILABLE
// (and INTERNAL, DEADLINE_EXCEEDED) are Retryable, RESOURCE_EXHAUSTED is
// Throttled, every other named status (INVALID_ARGUMENT, UNAUTHENTICATED,
// PERMISSION_DENIED, ...) Permanent; without a status the HTTP status
// decides (forward.ClassifyStatus).
func KindOf(httpStatus int, status string) forward.Kind {
	switch status {
	case "ABORTED", "UNAVAILABLE", "INTERNAL", "DEADLINE_EXCEEDED":
		return forward.Retryable
	case "RESOURCE_EXHAUSTED":
		return forward.Throttled
	case "":
		return forward.ClassifyStatus(httpStatus)
	}
	return forward.Permanent
}

// classify maps a non-2xx response to a *forward.Error, once. RetryAfter
// comes from the Retry-After header or a google.rpc.RetryInfo detail.
func classify(resp *httpx.Response, now time.Time) error {
	fe := &forward.Error{
		Status:     resp.Status,
		RetryAfter: forward.ParseRetryAfter(resp.Header.Get("Retry-After"), now),
	}
	var env apiError
	if err := json.Unmarshal(resp.Body, &env); err != nil || env.Error == nil {
		fe.Kind = forward.ClassifyStatus(resp.Status)
		fe.Reason = "unexpected response: " + snippet(resp.Body)
		return fe
	}
	e := env.Error
	fe.Kind = KindOf(resp.Status, e.Status)
	fe.Code = e.Status
	var b strings.Builder
	b.WriteString(e.Message)
	n := 0
	for _, raw := range e.Details {
		var d errorDetail
		if json.Unmarshal(raw, &d) != nil {
			continue
		}
		if fe.RetryAfter == 0 && d.RetryDelay != "" {
			if dur, err := time.ParseDuration(d.RetryDelay); err == nil && dur > 0 {
				fe.RetryAfter = dur
			}
		}
		for _, v := range d.FieldViolations {
			if n < 3 {
				fmt.Fprintf(&b, "; %s: %s (%s)", v.Field, v.Description, v.Reason)
			}
			n++
		}
		for _, ae := range d.Errors {
			if n < 3 {
				fmt.Fprintf(&b, "; %s: %s", ae.code(), ae.Message)
			}
			n++
		}
	}
	if n > 3 {
		fmt.Fprintf(&b, "; and %d more", n-3)
	}
	fe.Reason = b.String()
	return fe
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

// digits strips dashes and reports whether the rest is a non-empty run of
// decimal digits.
func digits(id string) (string, bool) {
	id = strings.ReplaceAll(id, "-", "")
	return id, id != "" && strings.Trim(id, "0123456789") == ""
}

func checkTime(t time.Time, now time.Time, margin time.Duration) error {
	if margin == 0 {
		margin = DefaultAgeMargin
	} else if margin < 0 {
		margin = 0
	}
	switch {
	case t.IsZero():
		return forward.Rejectf("google: conversion has no time")
	case now.Sub(t) > EventMaxAge-margin:
		return forward.Rejectf("google: conversion time %s is older than 90 days", t.UTC().Format(time.RFC3339))
	case t.Sub(now) > MaxClockSkew:
		return forward.Rejectf("google: conversion time %s is in the future", t.UTC().Format(time.RFC3339))
	}
	return nil
}
