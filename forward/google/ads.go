package google

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/jobpixel/jobpixel/forward"
	"github.com/jobpixel/jobpixel/forward/internal/httpx"
)

// Google Ads API defaults and limits.
const (
	DefaultAdsURL = "https://googleads.googleapis.com"
	// DefaultAdsVersion is the Google Ads API version; configure Ads.Version
	// to the version your developer token is cleared for.
	DefaultAdsVersion = "v22"
	// MaxClickConversions is the most conversions per
	// uploadClickConversions request.
	MaxClickConversions = 2000
	// DateTimeLayout is the conversionDateTime layout,
	// e.g. "2026-10-14 16:45:18+02:00".
	DateTimeLayout = "2006-01-02 15:04:05-07:00"
)

// Ads uploads click conversions with the Google Ads API. Fields are
// read-only once in use; zero values mean the documented defaults.
type Ads struct {
	// BaseURL is the API root; "" means DefaultAdsURL.
	BaseURL string
	// Version is the API version path element; "" means DefaultAdsVersion.
	Version string
	// DeveloperToken is sent as the developer-token header; required.
	DeveloperToken forward.Secret
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
	// Location is the time zone conversionDateTime is written in; nil
	// means UTC. The offset is always explicit, so any zone is correct.
	Location *time.Location
}

var _ forward.ConversionSender = (*Ads)(nil)

type clickConsent struct {
	AdUserData        string `json:"adUserData"`
	AdPersonalization string `json:"adPersonalization"`
}

type clickConversion struct {
	Gclid              string       `json:"gclid,omitempty"`
	Gbraid             string       `json:"gbraid,omitempty"`
	Wbraid             string       `json:"wbraid,omitempty"`
	ConversionAction   string       `json:"conversionAction"`
	ConversionDateTime string       `json:"conversionDateTime"`
	ConversionValue    json.Number  `json:"conversionValue,omitempty"`
	CurrencyCode       string       `json:"currencyCode,omitempty"`
	OrderID            string       `json:"orderId"`
	Consent            clickConsent `json:"consent"`
}

type uploadRequest struct {
	Conversions    []clickConversion `json:"conversions"`
	PartialFailure bool              `json:"partialFailure"`
}

type uploadResponse struct {
	Results             []map[string]json.RawMessage `json:"results"`
	PartialFailureError *struct {
		Code    int               `json:"code"`
		Message string            `json:"message"`
		Details []json.RawMessage `json:"details"`
	} `json:"partialFailureError"`
}

func adsConsent(granted bool) string {
	if granted {
		return "GRANTED"
	}
	return "DENIED"
}

// SendConversions uploads conversions as click conversions to customer
// dest.Account for conversion action dest.ID (conversionAction
// "customers/{Account}/conversionActions/{ID}"), at most
// MaxClickConversions per request, always with partialFailure true.
//
// Each conversion carries one click id (gclid, else gbraid, else wbraid),
// conversionDateTime in DateTimeLayout, orderId = Conversion.ID (the dedup
// key), consent GRANTED/DENIED as given, and the optional value. Headers:
// Authorization Bearer (dest.Tokens' token, else dest.Token),
// developer-token, and login-customer-id (digits only) when
// dest.LoginAccount is set.
//
// A 200 response carrying partialFailureError is not a success: each
// conversion named in it (or with an empty result) is reported as a
// Permanent per-item failure with Google's error code and message.
// Conversions without a click id or older than EventMaxAge-AgeMargin are
// refused locally.
func (c *Ads) SendConversions(ctx context.Context, dest forward.Destination, conversions []forward.Conversion) (forward.Result, error) {
	reject := func(err error) (forward.Result, error) {
		res := forward.RejectAll(len(conversions), func(i int) string { return conversions[i].ID }, err)
		return res, res.Err()
	}
	cid, ok := digits(dest.Account)
	if !ok {
		return reject(forward.Rejectf("google ads: destination account %q is not a customer id", dest.Account))
	}
	actionID, ok := digits(dest.ID)
	if !ok {
		return reject(forward.Rejectf("google ads: conversion action id %q is not numeric", dest.ID))
	}
	if !dest.HasToken() {
		return reject(forward.Rejectf("google ads: destination has no OAuth token"))
	}
	if c.DeveloperToken == "" {
		return reject(forward.Rejectf("google ads: no developer token configured"))
	}
	header := httpx.JSONHeader()
	header.Set("developer-token", string(c.DeveloperToken))
	if dest.LoginAccount != "" {
		login, ok := digits(dest.LoginAccount)
		if !ok {
			return reject(forward.Rejectf("google ads: login customer id %q is not numeric", dest.LoginAccount))
		}
		header.Set("login-customer-id", login)
	}
	base, version := c.BaseURL, c.Version
	if base == "" {
		base = DefaultAdsURL
	}
	if version == "" {
		version = DefaultAdsVersion
	}
	endpoint := strings.TrimRight(base, "/") + "/" + url.PathEscape(version) + "/customers/" + cid + ":uploadClickConversions"
	action := "customers/" + cid + "/conversionActions/" + actionID
	loc := c.Location
	if loc == nil {
		loc = time.UTC
	}
	now := c.now()
	b := forward.Batcher[forward.Conversion]{
		Size:  MaxClickConversions,
		Retry: c.Retry,
		ID:    func(cv forward.Conversion) string { return cv.ID },
		Check: func(cv forward.Conversion) error {
			if cv.ID == "" {
				return forward.Rejectf("google ads: conversion has no id (orderId)")
			}
			if cv.GCLID == "" && cv.GBRAID == "" && cv.WBRAID == "" {
				return forward.Rejectf("google ads: conversion has no gclid, gbraid or wbraid")
			}
			if err := checkTime(cv.Time, now, c.AgeMargin); err != nil {
				return err
			}
			return cv.Value.Check()
		},
		Send: func(ctx context.Context, _ forward.Batch, items []forward.Conversion) (forward.Outcome, error) {
			req := uploadRequest{Conversions: make([]clickConversion, len(items)), PartialFailure: true}
			for i, cv := range items {
				cc := clickConversion{
					ConversionAction:   action,
					ConversionDateTime: cv.Time.In(loc).Format(DateTimeLayout),
					OrderID:            cv.ID,
					Consent:            clickConsent{AdUserData: adsConsent(cv.Consent.AdUserData), AdPersonalization: adsConsent(cv.Consent.AdPersonalization)},
				}
				switch {
				case cv.GCLID != "":
					cc.Gclid = cv.GCLID
				case cv.GBRAID != "":
					cc.Gbraid = cv.GBRAID
				default:
					cc.Wbraid = cv.WBRAID
				}
				if !cv.Value.IsZero() {
					cc.ConversionValue = json.Number(cv.Value.Amount)
					cc.CurrencyCode = cv.Value.Currency
				}
				req.Conversions[i] = cc
			}
			body, err := json.Marshal(req)
			if err != nil {
				return forward.Outcome{}, &forward.Error{Kind: forward.Permanent, Reason: "google ads: encode conversions", Err: err}
			}
			resp, err := httpx.DoBearer(ctx, c.HTTPClient, httpx.Request{Method: http.MethodPost, URL: endpoint, Header: header, Body: body},
				httpx.Timeout(c.Timeout, DefaultTimeout), dest)
			if err != nil {
				return forward.Outcome{}, err
			}
			if resp.Status < 200 || resp.Status > 299 {
				return forward.Outcome{}, classify(resp, c.now())
			}
			return partialFailures(resp, len(items))
		},
	}
	res := b.Run(ctx, conversions)
	return res, res.Err()
}

// partialFailures turns a 200 uploadClickConversions response into an
// Outcome: failures located at conversions[i] and conversions whose result
// is empty are per-item Permanent failures. If the response reports a
// partial failure that cannot be attributed to any item, the whole batch
// fails rather than being counted as sent.
func partialFailures(resp *httpx.Response, n int) (forward.Outcome, error) {
	out := forward.Outcome{Status: resp.Status}
	var ur uploadResponse
	if err := json.Unmarshal(resp.Body, &ur); err != nil {
		return out, &forward.Error{Kind: forward.Permanent, Status: resp.Status, Reason: "google ads: unreadable response: " + snippet(resp.Body)}
	}
	pf := ur.PartialFailureError
	if pf == nil {
		return out, nil
	}
	type failure struct{ codes, msgs []string }
	byIndex := map[int]*failure{}
	for _, raw := range pf.Details {
		var d errorDetail
		if json.Unmarshal(raw, &d) != nil {
			continue
		}
		for _, ae := range d.Errors {
			if ae.Location == nil {
				continue
			}
			for _, el := range ae.Location.FieldPathElements {
				if el.FieldName == "conversions" && el.Index != nil && *el.Index >= 0 && *el.Index < n {
					f := byIndex[*el.Index]
					if f == nil {
						f = &failure{}
						byIndex[*el.Index] = f
					}
					f.codes = append(f.codes, ae.code())
					f.msgs = append(f.msgs, ae.Message)
					break
				}
			}
		}
	}
	if len(ur.Results) == n {
		for i, r := range ur.Results {
			if len(r) == 0 && byIndex[i] == nil {
				byIndex[i] = &failure{msgs: []string{pf.Message}}
			}
		}
	}
	if len(byIndex) == 0 {
		return out, &forward.Error{Kind: forward.Permanent, Status: resp.Status, Code: "PARTIAL_FAILURE",
			Reason: "google ads: partial failure not attributable to a conversion: " + pf.Message}
	}
	for i := range n {
		f := byIndex[i]
		if f == nil {
			continue
		}
		out.Failed = append(out.Failed, forward.ItemError{Index: i, Err: &forward.Error{
			Kind: forward.Permanent, Status: resp.Status,
			Code:   strings.Join(f.codes, ","),
			Reason: "google ads: partial failure: " + strings.Join(f.msgs, "; "),
		}})
	}
	return out, nil
}

func (c *Ads) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}
