package google

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/jobpixel/jobpixel/forward"
	"github.com/jobpixel/jobpixel/forward/internal/httpx"
)

// Data Manager API defaults and limits.
const (
	DefaultDataManagerURL = "https://datamanager.googleapis.com"
	// MaxMembers is the most audience members per ingest/remove request.
	MaxMembers = 10000
	// MaxEvents is the most events per events:ingest request.
	MaxEvents = 2000
)

// Operating account types accepted in Destination.AccountType.
var accountTypes = map[string]bool{
	"GOOGLE_ADS": true, "DISPLAY_VIDEO_PARTNER": true, "DISPLAY_VIDEO_ADVERTISER": true, "DATA_PARTNER": true,
}

// DataManager sends to the Data Manager API. Fields are read-only once in
// use; zero values mean the documented defaults.
type DataManager struct {
	// BaseURL is the API root; "" means DefaultDataManagerURL.
	BaseURL string
	// HTTPClient makes the requests; nil means http.DefaultClient.
	HTTPClient *http.Client
	// Timeout bounds one attempt; 0 means DefaultTimeout.
	Timeout time.Duration
	// Retry is applied to every request.
	Retry forward.RetryPolicy
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// AgeMargin: events older than EventMaxAge-AgeMargin are refused
	// locally. 0 means DefaultAgeMargin; negative means none.
	AgeMargin time.Duration
	// TermsAccepted records that the advertiser accepted Google's Customer
	// Match terms of service; AddMembers sends
	// termsOfService.customerMatchTermsOfServiceStatus "ACCEPTED" and
	// refuses to send anything while it is false.
	TermsAccepted bool
	// ValidateOnly asks Google to validate without applying.
	ValidateOnly bool
}

var (
	_ forward.ConversionSender = (*DataManager)(nil)
	_ forward.AudienceSender   = (*DataManager)(nil)
)

type account struct {
	AccountType string `json:"accountType"`
	AccountID   string `json:"accountId"`
}

type destination struct {
	OperatingAccount     account  `json:"operatingAccount"`
	LoginAccount         *account `json:"loginAccount,omitempty"`
	ProductDestinationID string   `json:"productDestinationId"`
}

type consent struct {
	AdUserData        string `json:"adUserData"`
	AdPersonalization string `json:"adPersonalization"`
}

type userIdentifier struct {
	EmailAddress string `json:"emailAddress,omitempty"`
	PhoneNumber  string `json:"phoneNumber,omitempty"`
}

type userData struct {
	UserIdentifiers []userIdentifier `json:"userIdentifiers"`
}

type audienceMember struct {
	UserData userData `json:"userData"`
	Consent  *consent `json:"consent,omitempty"`
}

type termsOfService struct {
	CustomerMatchTermsOfServiceStatus string `json:"customerMatchTermsOfServiceStatus"`
}

type membersRequest struct {
	Destinations    []destination    `json:"destinations"`
	AudienceMembers []audienceMember `json:"audienceMembers"`
	Encoding        string           `json:"encoding"`
	TermsOfService  *termsOfService  `json:"termsOfService,omitempty"`
	ValidateOnly    bool             `json:"validateOnly"`
}

type adIdentifiers struct {
	Gclid  string `json:"gclid,omitempty"`
	Gbraid string `json:"gbraid,omitempty"`
	Wbraid string `json:"wbraid,omitempty"`
}

type dmEvent struct {
	TransactionID   string         `json:"transactionId"`
	EventTimestamp  string         `json:"eventTimestamp"`
	UserData        *userData      `json:"userData,omitempty"`
	Consent         consent        `json:"consent"`
	AdIdentifiers   *adIdentifiers `json:"adIdentifiers,omitempty"`
	ConversionValue json.Number    `json:"conversionValue,omitempty"`
	Currency        string         `json:"currency,omitempty"`
	EventSource     string         `json:"eventSource"`
}

type eventsRequest struct {
	Destinations []destination `json:"destinations"`
	Events       []dmEvent     `json:"events"`
	Encoding     string        `json:"encoding"`
	ValidateOnly bool          `json:"validateOnly"`
}

func consentOf(c forward.Consent) consent {
	v := func(granted bool) string {
		if granted {
			return ConsentGranted
		}
		return ConsentDenied
	}
	return consent{AdUserData: v(c.AdUserData), AdPersonalization: v(c.AdPersonalization)}
}

func identifiers(id forward.Identity) []userIdentifier {
	var out []userIdentifier
	if id.GoogleEmail != "" {
		out = append(out, userIdentifier{EmailAddress: id.GoogleEmail})
	}
	if id.GooglePhone != "" {
		out = append(out, userIdentifier{PhoneNumber: id.GooglePhone})
	}
	return out
}

func (c *DataManager) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *DataManager) url(method string) string {
	base := c.BaseURL
	if base == "" {
		base = DefaultDataManagerURL
	}
	return strings.TrimRight(base, "/") + "/v1/" + method
}

// dmDestination validates dest and converts it to the wire form.
func dmDestination(dest forward.Destination) (destination, error) {
	acct, ok := digits(dest.Account)
	if !ok {
		return destination{}, forward.Rejectf("google: destination account %q is not a customer id", dest.Account)
	}
	id, ok := digits(dest.ID)
	if !ok {
		return destination{}, forward.Rejectf("google: destination id %q is not numeric", dest.ID)
	}
	typ := dest.AccountType
	if typ == "" {
		typ = "GOOGLE_ADS"
	}
	if !accountTypes[typ] {
		return destination{}, forward.Rejectf("google: unknown account type %q", dest.AccountType)
	}
	if !dest.HasToken() {
		return destination{}, forward.Rejectf("google: destination has no OAuth token")
	}
	d := destination{OperatingAccount: account{AccountType: typ, AccountID: acct}, ProductDestinationID: id}
	if dest.LoginAccount != "" {
		login, ok := digits(dest.LoginAccount)
		if !ok {
			return destination{}, forward.Rejectf("google: login account %q is not a customer id", dest.LoginAccount)
		}
		d.LoginAccount = &account{AccountType: typ, AccountID: login}
	}
	return d, nil
}

// post sends one request and maps a non-2xx answer with classify.
func (c *DataManager) post(ctx context.Context, endpoint string, dest forward.Destination, body []byte) (*httpx.Response, error) {
	resp, err := httpx.DoBearer(ctx, c.HTTPClient, httpx.Request{
		Method: http.MethodPost, URL: endpoint, Header: httpx.JSONHeader(), Body: body,
	}, httpx.Timeout(c.Timeout, DefaultTimeout), dest)
	if err != nil {
		return nil, err
	}
	if resp.Status < 200 || resp.Status > 299 {
		return resp, classify(resp, c.now())
	}
	return resp, nil
}

// AddMembers sends members to audienceMembers:ingest, at most MaxMembers
// per request, with each member's consent (CONSENT_GRANTED/CONSENT_DENIED
// as given), "encoding":"HEX" and the Customer Match terms of service.
// A member without GoogleEmail/GooglePhone, or with an unhashed one, is
// refused locally; with TermsAccepted false every member is.
func (c *DataManager) AddMembers(ctx context.Context, dest forward.Destination, members []forward.Member) (forward.Result, error) {
	if !c.TermsAccepted {
		err := forward.Rejectf("google: customer match terms of service not accepted for this client")
		res := forward.RejectAll(len(members), func(i int) string { return members[i].ID }, err)
		return res, res.Err()
	}
	return c.members(ctx, "audienceMembers:ingest", true, dest, members)
}

// RemoveMembers sends members to audienceMembers:remove, at most MaxMembers
// per request; the body is that of AddMembers without consent and terms of
// service.
func (c *DataManager) RemoveMembers(ctx context.Context, dest forward.Destination, members []forward.Member) (forward.Result, error) {
	return c.members(ctx, "audienceMembers:remove", false, dest, members)
}

func (c *DataManager) members(ctx context.Context, method string, ingest bool, dest forward.Destination, members []forward.Member) (forward.Result, error) {
	d, err := dmDestination(dest)
	if err != nil {
		res := forward.RejectAll(len(members), func(i int) string { return members[i].ID }, err)
		return res, res.Err()
	}
	endpoint := c.url(method)
	b := forward.Batcher[forward.Member]{
		Size:  MaxMembers,
		Retry: c.Retry,
		ID:    func(m forward.Member) string { return m.ID },
		Check: func(m forward.Member) error {
			if m.User.GoogleEmail == "" && m.User.GooglePhone == "" {
				return forward.Rejectf("google: member has no Google-normalised e-mail or phone hash")
			}
			return m.User.Check()
		},
		Send: func(ctx context.Context, _ forward.Batch, items []forward.Member) (forward.Outcome, error) {
			req := membersRequest{
				Destinations:    []destination{d},
				AudienceMembers: make([]audienceMember, len(items)),
				Encoding:        "HEX",
				ValidateOnly:    c.ValidateOnly,
			}
			if ingest {
				req.TermsOfService = &termsOfService{CustomerMatchTermsOfServiceStatus: "ACCEPTED"}
			}
			for i, m := range items {
				req.AudienceMembers[i] = audienceMember{UserData: userData{UserIdentifiers: identifiers(m.User)}}
				if ingest {
					cs := consentOf(m.Consent)
					req.AudienceMembers[i].Consent = &cs
				}
			}
			body, err := json.Marshal(req)
			if err != nil {
				return forward.Outcome{}, &forward.Error{Kind: forward.Permanent, Reason: "google: encode members", Err: err}
			}
			resp, err := c.post(ctx, endpoint, dest, body)
			if err != nil {
				return forward.Outcome{}, err
			}
			return forward.Outcome{Status: resp.Status}, nil
		},
	}
	res := b.Run(ctx, members)
	return res, res.Err()
}

// SendConversions sends conversions to events:ingest, at most MaxEvents per
// request, for the conversion action dest.ID of customer dest.Account.
// Each event has transactionId = Conversion.ID (the dedup key),
// eventTimestamp in RFC 3339, the Google-normalised identifiers, the
// consent as given, adIdentifiers gclid/gbraid/wbraid, the optional value
// and currency, and eventSource "WEB". A conversion with neither an
// identifier nor a click id, older than EventMaxAge-AgeMargin, or with an
// unhashed identifier is refused locally.
func (c *DataManager) SendConversions(ctx context.Context, dest forward.Destination, conversions []forward.Conversion) (forward.Result, error) {
	d, err := dmDestination(dest)
	if err != nil {
		res := forward.RejectAll(len(conversions), func(i int) string { return conversions[i].ID }, err)
		return res, res.Err()
	}
	endpoint := c.url("events:ingest")
	now := c.now()
	b := forward.Batcher[forward.Conversion]{
		Size:  MaxEvents,
		Retry: c.Retry,
		ID:    func(cv forward.Conversion) string { return cv.ID },
		Check: func(cv forward.Conversion) error {
			if cv.ID == "" {
				return forward.Rejectf("google: conversion has no id (transactionId)")
			}
			if err := checkTime(cv.Time, now, c.AgeMargin); err != nil {
				return err
			}
			if cv.User.GoogleEmail == "" && cv.User.GooglePhone == "" && cv.GCLID == "" && cv.GBRAID == "" && cv.WBRAID == "" {
				return forward.Rejectf("google: conversion has no Google-normalised identifier and no click id")
			}
			if err := cv.User.Check(); err != nil {
				return err
			}
			return cv.Value.Check()
		},
		Send: func(ctx context.Context, _ forward.Batch, items []forward.Conversion) (forward.Outcome, error) {
			req := eventsRequest{
				Destinations: []destination{d},
				Events:       make([]dmEvent, len(items)),
				Encoding:     "HEX",
				ValidateOnly: c.ValidateOnly,
			}
			for i, cv := range items {
				ev := dmEvent{
					TransactionID:  cv.ID,
					EventTimestamp: cv.Time.UTC().Format(time.RFC3339Nano),
					Consent:        consentOf(cv.Consent),
					EventSource:    "WEB",
				}
				if ids := identifiers(cv.User); len(ids) > 0 {
					ev.UserData = &userData{UserIdentifiers: ids}
				}
				if cv.GCLID != "" || cv.GBRAID != "" || cv.WBRAID != "" {
					ev.AdIdentifiers = &adIdentifiers{Gclid: cv.GCLID, Gbraid: cv.GBRAID, Wbraid: cv.WBRAID}
				}
				if !cv.Value.IsZero() {
					ev.ConversionValue = json.Number(cv.Value.Amount)
					ev.Currency = cv.Value.Currency
				}
				req.Events[i] = ev
			}
			body, err := json.Marshal(req)
			if err != nil {
				return forward.Outcome{}, &forward.Error{Kind: forward.Permanent, Reason: "google: encode events", Err: err}
			}
			resp, err := c.post(ctx, endpoint, dest, body)
			if err != nil {
				return forward.Outcome{}, err
			}
			return forward.Outcome{Status: resp.Status}, nil
		},
	}
	res := b.Run(ctx, conversions)
	return res, res.Err()
}
