package meta

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"time"

	"github.com/jobpixel/jobpixel/forward"
)

// event is one Conversions API event on the wire.
type event struct {
	EventName             string      `json:"event_name"`
	EventTime             int64       `json:"event_time"`
	EventID               string      `json:"event_id"`
	ActionSource          string      `json:"action_source"`
	EventSourceURL        string      `json:"event_source_url"`
	UserData              userData    `json:"user_data"`
	CustomData            *customData `json:"custom_data,omitempty"`
	DataProcessingOptions []string    `json:"data_processing_options"`
	DPOCountry            *int        `json:"data_processing_options_country,omitempty"`
	DPOState              *int        `json:"data_processing_options_state,omitempty"`
}

type userData struct {
	Em              []string `json:"em,omitempty"`
	Ph              []string `json:"ph,omitempty"`
	ClientIPAddress string   `json:"client_ip_address,omitempty"`
	ClientUserAgent string   `json:"client_user_agent"`
	Fbc             string   `json:"fbc,omitempty"`
	Fbp             string   `json:"fbp,omitempty"`
}

type customData struct {
	Value    json.Number `json:"value"`
	Currency string      `json:"currency"`
}

type eventsRequest struct {
	Data          []event `json:"data"`
	TestEventCode string  `json:"test_event_code,omitempty"`
}

type eventsResponse struct {
	EventsReceived *int   `json:"events_received"`
	FbtraceID      string `json:"fbtrace_id"`
}

// fbCookie matches _fbc / _fbp values: fb.{subdomain index}.{ms}.{value}.
var fbCookie = regexp.MustCompile(`^fb\.[0-9]\.[0-9]{10,}\.[^\s]+$`)

// SendConversions sends conversions to the pixel dest.ID, at most MaxEvents
// per request.
//
// Each event carries action_source "website", event_id = Conversion.ID
// (Meta's dedup key), event_time in unix seconds, user_data with the hashed
// em/ph, the unhashed client_ip_address (only if Conversion.IP is valid),
// client_user_agent, fbc and fbp, and data_processing_options ["LDU"] with
// country 0 and state 0 when Conversion.LDU is set, [] otherwise.
//
// Because one invalid event makes Meta reject the whole request, events
// that would be invalid are refused locally (Result.Rejected, Permanent,
// with the reason) instead: missing id, name, time, source URL or user
// agent; older than EventMaxAge-AgeMargin or more than MaxClockSkew in the
// future; an identity that is not hashed; a malformed fbc/fbp or value.
func (c *Client) SendConversions(ctx context.Context, dest forward.Destination, conversions []forward.Conversion) (forward.Result, error) {
	if err := checkDest(dest, "pixel"); err != nil {
		res := forward.RejectAll(len(conversions), func(i int) string { return conversions[i].ID }, err)
		return res, res.Err()
	}
	endpoint := c.endpoint(dest.ID, "events", dest.Token)
	timeout := c.EventTimeout
	if timeout == 0 {
		timeout = DefaultEventTimeout
	}
	now := c.now()
	b := forward.Batcher[forward.Conversion]{
		Size:  MaxEvents,
		Retry: c.Retry,
		Check: func(cv forward.Conversion) error { return c.check(cv, now) },
		ID:    func(cv forward.Conversion) string { return cv.ID },
		Send: func(ctx context.Context, _ forward.Batch, items []forward.Conversion) (forward.Outcome, error) {
			req := eventsRequest{Data: make([]event, len(items)), TestEventCode: dest.TestCode}
			for i, cv := range items {
				req.Data[i] = toEvent(cv)
			}
			body, err := json.Marshal(req)
			if err != nil {
				return forward.Outcome{}, &forward.Error{Kind: forward.Permanent, Reason: "meta: encode events", Err: err}
			}
			resp, err := c.send(ctx, http.MethodPost, endpoint, body, timeout)
			if err != nil {
				return forward.Outcome{}, err
			}
			var out eventsResponse
			if err := json.Unmarshal(resp.Body, &out); err != nil || out.EventsReceived == nil {
				return forward.Outcome{}, &forward.Error{Kind: forward.Permanent, Status: resp.Status,
					Reason: "meta: response has no events_received: " + snippet(resp.Body)}
			}
			if *out.EventsReceived != len(items) {
				return forward.Outcome{}, &forward.Error{Kind: forward.Permanent, Status: resp.Status,
					Reason: "meta: events_received does not match the number of events sent (fbtrace_id " + out.FbtraceID + ")"}
			}
			return forward.Outcome{Status: resp.Status}, nil
		},
	}
	res := b.Run(ctx, conversions)
	return res, res.Err()
}

func (c *Client) check(cv forward.Conversion, now time.Time) error {
	margin := c.AgeMargin
	if margin == 0 {
		margin = DefaultAgeMargin
	} else if margin < 0 {
		margin = 0
	}
	switch {
	case cv.ID == "":
		return forward.Rejectf("meta: conversion has no id (event_id)")
	case cv.Name == "":
		return forward.Rejectf("meta: conversion has no event name")
	case cv.Time.IsZero():
		return forward.Rejectf("meta: conversion has no time")
	case now.Sub(cv.Time) > EventMaxAge-margin:
		return forward.Rejectf("meta: event_time %s is older than 7 days (Meta rejects the whole request)", cv.Time.UTC().Format(time.RFC3339))
	case cv.Time.Sub(now) > MaxClockSkew:
		return forward.Rejectf("meta: event_time %s is in the future", cv.Time.UTC().Format(time.RFC3339))
	case cv.UserAgent == "":
		return forward.Rejectf("meta: conversion has no client user agent (required for action_source website)")
	case cv.FBC != "" && !fbCookie.MatchString(cv.FBC):
		return forward.Rejectf("meta: fbc is not of the form fb.1.{ms}.{fbclid}")
	case cv.FBP != "" && !fbCookie.MatchString(cv.FBP):
		return forward.Rejectf("meta: fbp is not of the form fb.1.{ms}.{random}")
	}
	if u, err := url.Parse(cv.SourceURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return forward.Rejectf("meta: event source URL is not an absolute http(s) URL")
	}
	if err := cv.User.Check(); err != nil {
		return err
	}
	return cv.Value.Check()
}

func toEvent(cv forward.Conversion) event {
	ev := event{
		EventName:      cv.Name,
		EventTime:      cv.Time.Unix(),
		EventID:        cv.ID,
		ActionSource:   "website",
		EventSourceURL: cv.SourceURL,
		UserData: userData{
			ClientUserAgent: cv.UserAgent,
			Fbc:             cv.FBC,
			Fbp:             cv.FBP,
		},
		DataProcessingOptions: []string{},
	}
	if cv.User.Email != "" {
		ev.UserData.Em = []string{cv.User.Email}
	}
	if cv.User.Phone != "" {
		ev.UserData.Ph = []string{cv.User.Phone}
	}
	if cv.IP.IsValid() {
		ev.UserData.ClientIPAddress = cv.IP.Unmap().WithZone("").String()
	}
	if !cv.Value.IsZero() {
		ev.CustomData = &customData{Value: json.Number(cv.Value.Amount), Currency: cv.Value.Currency}
	}
	if cv.LDU {
		zero := 0
		ev.DataProcessingOptions = []string{"LDU"}
		ev.DPOCountry, ev.DPOState = &zero, &zero
	}
	return ev
}
