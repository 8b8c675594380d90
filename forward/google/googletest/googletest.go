// Package googletest is a strict in-process fake of the Google endpoints
// jobpixel uses: the Data Manager API (POST /v1/audienceMembers:ingest,
// /v1/audienceMembers:remove, /v1/events:ingest) and the Google Ads API
// (POST /{version}/customers/{cid}:uploadClickConversions), and an OAuth
// 2.0 token endpoint (POST /token, see fakeserver.Tokens) whose access
// tokens expire. Point both google.DataManager.BaseURL and
// google.Ads.BaseURL at URL(), token sources at URL()+"/token".
//
// Off-spec requests get Google's error envelope:
//
//	{"error":{"code":400,"message":"Request contains an invalid argument.",
//	  "status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.BadRequest",
//	  "fieldViolations":[{"field":"...","description":"...","reason":"..."}]}]}}
//
// (one field violation, the first found; Ads errors carry a
// google.ads.googleads.{version}.errors.GoogleAdsFailure detail instead).
// Reason and error-code names follow the real enums where known; the
// descriptions are the fake's own.
//
// Data Manager checks: Authorization: Bearer (401 UNAUTHENTICATED);
// application/json; exact-case keys, no unknown fields, right JSON types;
// destinations with operatingAccount{accountType (GOOGLE_ADS,
// DISPLAY_VIDEO_PARTNER, DISPLAY_VIDEO_ADVERTISER, DATA_PARTNER), accountId
// digits}, optional loginAccount, productDestinationId digits;
// encoding "HEX"; ingest: 1..10,000 members, termsOfService ACCEPTED, each
// member's consent (member, else request level) explicit and valid;
// remove: 1..10,000 members, no request consent or termsOfService;
// identifiers 1..10 per member, each exactly one of emailAddress /
// phoneNumber, 64 lowercase hex, not the hash of a registered value in the
// wrong normalisation (RegisterEmail, RegisterPhone); events: 1..2,000,
// transactionId (required by this fake: it is the dedup key),
// eventTimestamp RFC 3339 within 90 days and not in the future, eventSource
// (required by this fake), explicit consent, a user identifier or an ad
// identifier, conversionValue a number with a 3-letter currency.
//
// Ads checks: version (404), Authorization Bearer and developer-token (401),
// login-customer-id digits only (400), partialFailure true, 1..2,000
// conversions (whole request 400); then per conversion, reported as a
// partial failure (HTTP 200 with partialFailureError and an empty result):
// exactly one of gclid/gbraid/wbraid, conversionAction
// customers/{cid}/conversionActions/{digits} of the same customer,
// conversionDateTime "yyyy-mm-dd hh:mm:ss+hh:mm" within 90 days, orderId
// (required by this fake), consent GRANTED/DENIED/UNSPECIFIED, value with
// currencyCode, and clicks registered with FailClick.
package googletest

import (
	"fmt"
	"mime"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jobpixel/jobpixel/forward/internal/fakeserver"
)

// Limits enforced by the fake.
const (
	MaxMembers          = 10000
	MaxEvents           = 2000
	MaxClickConversions = 2000
	MaxIdentifiers      = 10
	MaxEventAge         = 90 * 24 * time.Hour
	MaxSkew             = 10 * time.Minute
)

// Config configures a Server.
type Config struct {
	// Token, if set, is the only accepted bearer token besides the
	// unexpired ones Tokens issued (any non-empty one otherwise; a token
	// Tokens issued is refused once it expired).
	Token string
	// DeveloperToken, if set, is the only accepted Ads developer-token
	// (any non-empty one otherwise).
	DeveloperToken string
	// TokenTTL is how long the access tokens of the token endpoint
	// (Tokens, at URL()+"/token") last; 0 means an hour, as Google's do.
	TokenTTL time.Duration
	// AdsVersion is the only accepted Ads API version; "" means "v22".
	AdsVersion string
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// Fault is a scripted answer; see Inject.
type Fault = fakeserver.Fault

// Consent is a recorded consent.
type Consent struct{ AdUserData, AdPersonalization string }

// Member is a recorded audience member.
type Member struct {
	Emails, Phones []string
	Consent        Consent // zero for members that came without one
}

// Event is a recorded events:ingest event.
type Event struct {
	Destination           string // productDestinationId of the first destination
	TransactionID         string
	Timestamp             time.Time
	Emails, Phones        []string
	Consent               Consent
	Gclid, Gbraid, Wbraid string
	Value                 *float64
	Currency              string
	Source                string
}

// Click is a recorded click conversion.
type Click struct {
	CustomerID                      string
	Gclid, Gbraid, Wbraid           string
	ConversionAction                string
	ConversionDateTime              string
	OrderID                         string
	Value                           *float64
	Currency                        string
	Consent                         Consent
	LoginCustomerID, DeveloperToken string
}

// Request is one request that reached validation (faults excluded).
type Request struct {
	Method, Path string
	Status       int
	Items        int // members, events or conversions in the body
	Failed       int // partial failures (Ads)
}

// Server is the fake. It is safe for concurrent use.
type Server struct {
	cfg              Config
	*fakeserver.Base // URL, Client, Close, Inject, InjectN, Pending, Hits
	handler          http.Handler
	// Tokens is the OAuth 2.0 token endpoint (refresh tokens, service
	// accounts) at URL()+fakeserver.TokenPath; register credentials on it.
	Tokens *fakeserver.Tokens

	mu         sync.Mutex
	members    map[string]map[string]Member // productDestinationId → key → member
	events     []Event
	eventIDs   map[string]int
	clicks     []Click
	orderIDs   map[string]int
	requests   []Request
	wrongHash  map[string]string
	failClicks map[string]clickFailure
	seq        int
}

type clickFailure struct{ code, message string }

// New returns an unstarted Server.
func New(cfg Config) *Server {
	if cfg.AdsVersion == "" {
		cfg.AdsVersion = "v22"
	}
	if cfg.TokenTTL == 0 {
		cfg.TokenTTL = time.Hour
	}
	s := &Server{
		cfg:        cfg,
		Base:       fakeserver.New(),
		members:    map[string]map[string]Member{},
		eventIDs:   map[string]int{},
		orderIDs:   map[string]int{},
		wrongHash:  map[string]string{},
		failClicks: map[string]clickFailure{},
	}
	s.Tokens = fakeserver.NewTokens(cfg.TokenTTL, s.now, false)
	s.handler = s.Base.Wrap(http.HandlerFunc(s.serve))
	return s
}

// Start returns a Server listening on a local httptest.Server.
func Start(cfg Config) *Server {
	s := New(cfg)
	s.Base.Start(http.HandlerFunc(s.serve))
	return s
}

// ServeHTTP handles a request, applying scripted faults first.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// NormalizeEmail applies Google's e-mail normalisation: trim, lowercase,
// remove whitespace; for gmail.com and googlemail.com also remove dots in
// the local part and anything from '+'.
func NormalizeEmail(raw string) string {
	e := strings.Join(strings.Fields(strings.ToLower(raw)), "")
	local, domain, ok := strings.Cut(e, "@")
	if ok && (domain == "gmail.com" || domain == "googlemail.com") {
		local, _, _ = strings.Cut(local, "+")
		local = strings.ReplaceAll(local, ".", "")
		e = local + "@" + domain
	}
	return e
}

// RegisterEmail tells the fake a plaintext address a test uses; hashes of
// it in any other normalisation than NormalizeEmail (raw, or merely
// trimmed and lowercased as Meta does, which keeps gmail dots and '+') are
// then rejected.
func (s *Server) RegisterEmail(raw string) {
	want := fakeserver.SHA256(NormalizeEmail(raw))
	s.registerWrong(want, "e-mail", raw, strings.TrimSpace(raw), strings.ToLower(strings.TrimSpace(raw)))
}

// RegisterPhone tells the fake a plaintext phone number and its E.164 form
// (e.g. "(800)555-0100", "+18005550100"); hashes of the raw text or of the
// digits without '+' are then rejected.
func (s *Server) RegisterPhone(raw, e164 string) {
	want := fakeserver.SHA256(e164)
	s.registerWrong(want, "phone", raw, strings.TrimSpace(raw), strings.TrimPrefix(e164, "+"))
}

func (s *Server) registerWrong(want, what string, variants ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range variants {
		if h := fakeserver.SHA256(v); h != want {
			s.wrongHash[h] = what
		}
	}
}

// FailClick makes every conversion with this gclid (or gbraid/wbraid) a
// partial failure with conversionUploadError code (e.g. "CLICK_NOT_FOUND").
func (s *Server) FailClick(clickID, code, message string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failClicks[clickID] = clickFailure{code, message}
}

// Members returns the sorted member keys (first e-mail hash, else first
// phone hash) currently in the list with productDestinationId dest.
func (s *Server) Members(dest string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for k := range s.members[dest] {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Member returns a recorded member by key.
func (s *Server) Member(dest, key string) (Member, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.members[dest][key]
	return m, ok
}

// Events returns the accepted events:ingest events, duplicates included.
func (s *Server) Events() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.events)
}

// Event returns the first accepted event with this transactionId.
func (s *Server) Event(transactionID string) (Event, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.events {
		if e.TransactionID == transactionID {
			return e, true
		}
	}
	return Event{}, false
}

// Clicks returns the accepted click conversions, duplicates included.
func (s *Server) Clicks() []Click {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.clicks)
}

// Click returns the first accepted click conversion with this orderId.
func (s *Server) Click(orderID string) (Click, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.clicks {
		if c.OrderID == orderID {
			return c, true
		}
	}
	return Click{}, false
}

// Duplicates returns, for each transactionId (events) or orderId (click
// conversions) accepted more than once, how many extra times.
func (s *Server) Duplicates() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for _, m := range []map[string]int{s.eventIDs, s.orderIDs} {
		for id, n := range m {
			if n > 1 {
				out[id] += n - 1
			}
		}
	}
	return out
}

// Requests returns every request that reached validation, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

func (s *Server) now() time.Time {
	if s.cfg.Now != nil {
		return s.cfg.Now()
	}
	return time.Now()
}

// --- envelopes ---

// apiErr is an error answer.
type apiErr struct {
	code    int
	status  string
	message string
	details []any
}

// Envelope returns Google's error envelope; details are omitted when none.
func Envelope(code int, status, message string, details ...any) []byte {
	e := map[string]any{"code": code, "message": message, "status": status}
	if len(details) > 0 {
		e["details"] = details
	}
	return fakeserver.MustJSON(map[string]any{"error": e})
}

// BadRequest returns a google.rpc.BadRequest detail with one violation;
// an empty reason is omitted.
func BadRequest(field, description, reason string) map[string]any {
	v := map[string]any{"field": field, "description": description}
	if reason != "" {
		v["reason"] = reason
	}
	return map[string]any{"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": []any{v}}
}

// AdsFailure returns a GoogleAdsFailure detail for version with one error.
// errorCode is e.g. {"conversionUploadError":"CLICK_NOT_FOUND"}; fieldPath,
// if non-empty, becomes the error's location (e.g. "conversions", 0,
// "gclid": a name optionally followed by its index).
func AdsFailure(version string, errorCode map[string]string, message string, fieldPath ...any) map[string]any {
	return map[string]any{
		"@type":  "type.googleapis.com/google.ads.googleads." + version + ".errors.GoogleAdsFailure",
		"errors": []any{adsErrorJSON(errorCode, message, fieldPath...)},
	}
}

func adsErrorJSON(errorCode map[string]string, message string, fieldPath ...any) map[string]any {
	e := map[string]any{"errorCode": errorCode, "message": message}
	if len(fieldPath) > 0 {
		var els []any
		for i := 0; i < len(fieldPath); i++ {
			el := map[string]any{"fieldName": fieldPath[i]}
			if i+1 < len(fieldPath) {
				if idx, ok := fieldPath[i+1].(int); ok {
					el["index"] = idx
					i++
				}
			}
			els = append(els, el)
		}
		e["location"] = map[string]any{"fieldPathElements": els}
	}
	return e
}

const invalidArgument = "Request contains an invalid argument."

func violation(field, description, reason string) *apiErr {
	return &apiErr{code: 400, status: "INVALID_ARGUMENT", message: invalidArgument,
		details: []any{BadRequest(field, description, reason)}}
}

func unauthenticated() *apiErr {
	return &apiErr{code: 401, status: "UNAUTHENTICATED",
		message: "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project."}
}

func (e *apiErr) write(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.code)
	w.Write(Envelope(e.code, e.status, e.message, e.details...))
}

// --- routing ---

var adsPath = regexp.MustCompile(`^/([^/]+)/customers/([^/:]+):uploadClickConversions$`)

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == fakeserver.TokenPath {
		s.Tokens.ServeHTTP(w, r)
		return
	}
	rec := Request{Method: r.Method, Path: r.URL.Path}
	var err *apiErr
	rec.Status, rec.Items, rec.Failed, err = s.handle(w, r)
	if err != nil {
		rec.Status = err.code
		err.write(w)
	}
	s.mu.Lock()
	s.requests = append(s.requests, rec)
	s.mu.Unlock()
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request) (status, items, failed int, _ *apiErr) {
	notFound := &apiErr{code: 404, status: "NOT_FOUND", message: "Method not found."}
	if r.Method != http.MethodPost {
		return 0, 0, 0, notFound
	}
	path := r.URL.Path
	var handler func(http.ResponseWriter, *http.Request, []byte) (int, int, int, *apiErr)
	switch path {
	case "/v1/audienceMembers:ingest":
		handler = func(w http.ResponseWriter, r *http.Request, b []byte) (int, int, int, *apiErr) {
			return s.audience(w, b, true)
		}
	case "/v1/audienceMembers:remove":
		handler = func(w http.ResponseWriter, r *http.Request, b []byte) (int, int, int, *apiErr) {
			return s.audience(w, b, false)
		}
	case "/v1/events:ingest":
		handler = s.dmEvents
	default:
		if !adsPath.MatchString(path) {
			return 0, 0, 0, notFound
		}
		handler = s.upload
	}
	auth, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || !s.Tokens.Accepts(auth, s.cfg.Token) {
		return 0, 0, 0, unauthenticated()
	}
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" {
		return 0, 0, 0, violation("", fmt.Sprintf("content type %q is not application/json", ct), "INVALID_ARGUMENT")
	}
	body, err := fakeserver.ReadBody(r, 64<<20)
	if err != nil {
		return 0, 0, 0, violation("", err.Error(), "INVALID_ARGUMENT")
	}
	return handler(w, r, body)
}

func decodeErr(err error) *apiErr {
	return &apiErr{code: 400, status: "INVALID_ARGUMENT", message: "Invalid JSON payload received. " + err.Error(),
		details: []any{BadRequest("", err.Error(), "")}}
}

// --- Data Manager ---

type wireAccount struct {
	AccountType *string `json:"accountType"`
	AccountID   *string `json:"accountId"`
}

type wireDestination struct {
	OperatingAccount     *wireAccount `json:"operatingAccount"`
	LoginAccount         *wireAccount `json:"loginAccount"`
	LinkedAccount        *wireAccount `json:"linkedAccount"`
	ProductDestinationID *string      `json:"productDestinationId"`
	Reference            *string      `json:"reference"`
}

type wireConsent struct {
	AdUserData        *string `json:"adUserData"`
	AdPersonalization *string `json:"adPersonalization"`
}

type wireIdentifier struct {
	EmailAddress *string `json:"emailAddress"`
	PhoneNumber  *string `json:"phoneNumber"`
}

type wireUserData struct {
	UserIdentifiers []wireIdentifier `json:"userIdentifiers"`
}

type wireMember struct {
	UserData *wireUserData `json:"userData"`
	Consent  *wireConsent  `json:"consent"`
}

type wireTerms struct {
	CustomerMatchTermsOfServiceStatus *string `json:"customerMatchTermsOfServiceStatus"`
}

type wireMembersRequest struct {
	Destinations    []wireDestination `json:"destinations"`
	AudienceMembers []wireMember      `json:"audienceMembers"`
	Consent         *wireConsent      `json:"consent"`
	Encoding        *string           `json:"encoding"`
	TermsOfService  *wireTerms        `json:"termsOfService"`
	ValidateOnly    *bool             `json:"validateOnly"`
}

type wireAdIdentifiers struct {
	Gclid  *string `json:"gclid"`
	Gbraid *string `json:"gbraid"`
	Wbraid *string `json:"wbraid"`
}

type wireEvent struct {
	TransactionID   *string            `json:"transactionId"`
	EventTimestamp  *string            `json:"eventTimestamp"`
	UserData        *wireUserData      `json:"userData"`
	Consent         *wireConsent       `json:"consent"`
	AdIdentifiers   *wireAdIdentifiers `json:"adIdentifiers"`
	ConversionValue *float64           `json:"conversionValue"`
	Currency        *string            `json:"currency"`
	EventSource     *string            `json:"eventSource"`
}

type wireEventsRequest struct {
	Destinations []wireDestination `json:"destinations"`
	Events       []wireEvent       `json:"events"`
	Consent      *wireConsent      `json:"consent"`
	Encoding     *string           `json:"encoding"`
	ValidateOnly *bool             `json:"validateOnly"`
}

var (
	accountTypes = map[string]bool{"GOOGLE_ADS": true, "DISPLAY_VIDEO_PARTNER": true, "DISPLAY_VIDEO_ADVERTISER": true, "DATA_PARTNER": true}
	consentVals  = map[string]bool{"CONSENT_GRANTED": true, "CONSENT_DENIED": true, "CONSENT_STATUS_UNSPECIFIED": true}
	eventSources = map[string]bool{"WEB": true, "APP": true, "IN_STORE": true, "PHONE": true, "OTHER": true}
	digitsRE     = regexp.MustCompile(`^[0-9]+$`)
	currencyRE   = regexp.MustCompile(`^[A-Z]{3}$`)
)

func checkAccount(field string, a *wireAccount) *apiErr {
	if a == nil {
		return violation(field, "required", "REQUIRED_FIELD_MISSING")
	}
	if a.AccountType == nil || !accountTypes[*a.AccountType] {
		return violation(field+".account_type", "missing or unknown account type", "INVALID_ENUM_VALUE")
	}
	if a.AccountID == nil || !digitsRE.MatchString(*a.AccountID) {
		return violation(field+".account_id", "account id must be digits only", "INVALID_ARGUMENT")
	}
	return nil
}

func checkDestinations(ds []wireDestination) (string, *apiErr) {
	if len(ds) == 0 {
		return "", violation("destinations", "at least one destination is required", "REQUIRED_FIELD_MISSING")
	}
	for i, d := range ds {
		p := fmt.Sprintf("destinations[%d]", i)
		if err := checkAccount(p+".operating_account", d.OperatingAccount); err != nil {
			return "", err
		}
		if d.LoginAccount != nil {
			if err := checkAccount(p+".login_account", d.LoginAccount); err != nil {
				return "", err
			}
		}
		if d.ProductDestinationID == nil || !digitsRE.MatchString(*d.ProductDestinationID) {
			return "", violation(p+".product_destination_id", "product destination id must be digits only", "INVALID_ARGUMENT")
		}
	}
	return *ds[0].ProductDestinationID, nil
}

func checkConsent(field string, c *wireConsent) (Consent, *apiErr) {
	if c == nil || c.AdUserData == nil || c.AdPersonalization == nil {
		return Consent{}, violation(field, "consent must state adUserData and adPersonalization", "REQUIRED_FIELD_MISSING")
	}
	if !consentVals[*c.AdUserData] || !consentVals[*c.AdPersonalization] {
		return Consent{}, violation(field, "consent values are CONSENT_GRANTED, CONSENT_DENIED or CONSENT_STATUS_UNSPECIFIED", "INVALID_ENUM_VALUE")
	}
	return Consent{*c.AdUserData, *c.AdPersonalization}, nil
}

func (s *Server) checkHash(field, v string) *apiErr {
	if len(v) != 64 {
		return violation(field, "value must be a hex-encoded SHA-256 hash (64 characters)", "INVALID_SHA256_FORMAT")
	}
	if !fakeserver.IsHexish(v) {
		return violation(field, "value is not hex encoded", "INVALID_HEX_ENCODING")
	}
	if !fakeserver.IsSHA256(v) {
		return violation(field, "hex must be lowercase", "INVALID_HEX_ENCODING")
	}
	s.mu.Lock()
	what, bad := s.wrongHash[v]
	s.mu.Unlock()
	if bad {
		return violation(field, "hash of a "+what+" that was not normalised the Google way", "INVALID_FORMAT")
	}
	return nil
}

func (s *Server) checkUserData(p string, ud *wireUserData, required bool) (emails, phones []string, _ *apiErr) {
	if ud == nil {
		if required {
			return nil, nil, violation(p+".user_data", "required", "REQUIRED_FIELD_MISSING")
		}
		return nil, nil, nil
	}
	if len(ud.UserIdentifiers) == 0 {
		return nil, nil, violation(p+".user_data.user_identifiers", "at least one identifier is required", "REQUIRED_FIELD_MISSING")
	}
	if len(ud.UserIdentifiers) > MaxIdentifiers {
		return nil, nil, violation(p+".user_data.user_identifiers", fmt.Sprintf("at most %d identifiers", MaxIdentifiers), "TOO_MANY_USER_IDENTIFIERS")
	}
	for j, id := range ud.UserIdentifiers {
		ip := fmt.Sprintf("%s.user_data.user_identifiers[%d]", p, j)
		switch {
		case id.EmailAddress != nil && id.PhoneNumber == nil:
			if err := s.checkHash(ip+".email_address", *id.EmailAddress); err != nil {
				return nil, nil, err
			}
			emails = append(emails, *id.EmailAddress)
		case id.PhoneNumber != nil && id.EmailAddress == nil:
			if err := s.checkHash(ip+".phone_number", *id.PhoneNumber); err != nil {
				return nil, nil, err
			}
			phones = append(phones, *id.PhoneNumber)
		default:
			return nil, nil, violation(ip, "exactly one of email_address, phone_number must be set", "INVALID_ARGUMENT")
		}
	}
	return emails, phones, nil
}

func checkEncoding(e *string) *apiErr {
	if e == nil {
		return violation("encoding", "encoding is required for hashed identifiers", "REQUIRED_FIELD_MISSING")
	}
	if *e != "HEX" {
		return violation("encoding", "this fake supports HEX encoding only", "INVALID_ENUM_VALUE")
	}
	return nil
}

func (s *Server) nextRequestID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	return fmt.Sprintf("fake-%d", s.seq)
}

func (s *Server) audience(w http.ResponseWriter, body []byte, ingest bool) (int, int, int, *apiErr) {
	var req wireMembersRequest
	if err := fakeserver.Decode(body, &req); err != nil {
		return 0, 0, 0, decodeErr(err)
	}
	n := len(req.AudienceMembers)
	dest, err := checkDestinations(req.Destinations)
	if err != nil {
		return 0, n, 0, err
	}
	if err := checkEncoding(req.Encoding); err != nil {
		return 0, n, 0, err
	}
	if ingest {
		if req.TermsOfService == nil || req.TermsOfService.CustomerMatchTermsOfServiceStatus == nil ||
			*req.TermsOfService.CustomerMatchTermsOfServiceStatus != "ACCEPTED" {
			return 0, n, 0, violation("terms_of_service", "customer match terms of service must be ACCEPTED", "TERMS_AND_CONDITIONS_NOT_SIGNED")
		}
	} else {
		if req.Consent != nil {
			return 0, n, 0, violation("consent", "consent is not allowed on remove", "INVALID_ARGUMENT")
		}
		if req.TermsOfService != nil {
			return 0, n, 0, violation("terms_of_service", "terms_of_service is not allowed on remove", "INVALID_ARGUMENT")
		}
	}
	if n == 0 {
		return 0, n, 0, violation("audience_members", "at least one audience member is required", "REQUIRED_FIELD_MISSING")
	}
	if n > MaxMembers {
		return 0, n, 0, violation("audience_members", fmt.Sprintf("at most %d audience members per request, got %d", MaxMembers, n), "TOO_MANY_AUDIENCE_MEMBERS")
	}
	got := make([]Member, n)
	for i, m := range req.AudienceMembers {
		p := fmt.Sprintf("audience_members[%d]", i)
		emails, phones, err := s.checkUserData(p, m.UserData, true)
		if err != nil {
			return 0, n, 0, err
		}
		got[i] = Member{Emails: emails, Phones: phones}
		if ingest {
			c := m.Consent
			cp := p + ".consent"
			if c == nil {
				c, cp = req.Consent, "consent"
			}
			consent, err := checkConsent(cp, c)
			if err != nil {
				return 0, n, 0, err
			}
			got[i].Consent = consent
		} else if m.Consent != nil {
			if _, err := checkConsent(p+".consent", m.Consent); err != nil {
				return 0, n, 0, err
			}
		}
	}
	if req.ValidateOnly == nil || !*req.ValidateOnly {
		s.mu.Lock()
		list := s.members[dest]
		if list == nil {
			list = map[string]Member{}
			s.members[dest] = list
		}
		for _, m := range got {
			key := ""
			if len(m.Emails) > 0 {
				key = m.Emails[0]
			} else {
				key = m.Phones[0]
			}
			if ingest {
				list[key] = m
			} else {
				delete(list, key)
			}
		}
		s.mu.Unlock()
	}
	fakeserver.WriteJSON(w, http.StatusOK, map[string]string{"requestId": s.nextRequestID()})
	return http.StatusOK, n, 0, nil
}

func (s *Server) dmEvents(w http.ResponseWriter, _ *http.Request, body []byte) (int, int, int, *apiErr) {
	var req wireEventsRequest
	if err := fakeserver.Decode(body, &req); err != nil {
		return 0, 0, 0, decodeErr(err)
	}
	n := len(req.Events)
	dest, err := checkDestinations(req.Destinations)
	if err != nil {
		return 0, n, 0, err
	}
	if n == 0 {
		return 0, n, 0, violation("events", "at least one event is required", "REQUIRED_FIELD_MISSING")
	}
	if n > MaxEvents {
		return 0, n, 0, violation("events", fmt.Sprintf("at most %d events per request, got %d", MaxEvents, n), "TOO_MANY_EVENTS")
	}
	now := s.now()
	got := make([]Event, n)
	for i, ev := range req.Events {
		p := fmt.Sprintf("events[%d]", i)
		if ev.TransactionID == nil || *ev.TransactionID == "" {
			return 0, n, 0, violation(p+".transaction_id", "required (it is the dedup key)", "REQUIRED_FIELD_MISSING")
		}
		if ev.EventTimestamp == nil {
			return 0, n, 0, violation(p+".event_timestamp", "required", "REQUIRED_FIELD_MISSING")
		}
		ts, perr := time.Parse(time.RFC3339Nano, *ev.EventTimestamp)
		if perr != nil {
			return 0, n, 0, violation(p+".event_timestamp", "not an RFC 3339 timestamp", "INVALID_FORMAT")
		}
		if now.Sub(ts) > MaxEventAge {
			return 0, n, 0, violation(p+".event_timestamp", "event is older than 90 days", "INVALID_ARGUMENT")
		}
		if ts.Sub(now) > MaxSkew {
			return 0, n, 0, violation(p+".event_timestamp", "event is in the future", "INVALID_ARGUMENT")
		}
		if ev.EventSource == nil || !eventSources[*ev.EventSource] {
			return 0, n, 0, violation(p+".event_source", "missing or unknown event source", "INVALID_ENUM_VALUE")
		}
		c := ev.Consent
		cp := p + ".consent"
		if c == nil {
			c, cp = req.Consent, "consent"
		}
		consent, cerr := checkConsent(cp, c)
		if cerr != nil {
			return 0, n, 0, cerr
		}
		emails, phones, uerr := s.checkUserData(p, ev.UserData, false)
		if uerr != nil {
			return 0, n, 0, uerr
		}
		if ev.UserData != nil {
			if err := checkEncoding(req.Encoding); err != nil {
				return 0, n, 0, err
			}
		}
		e := Event{Destination: dest, TransactionID: *ev.TransactionID, Timestamp: ts, Emails: emails, Phones: phones,
			Consent: consent, Source: *ev.EventSource, Value: ev.ConversionValue}
		if ai := ev.AdIdentifiers; ai != nil {
			for _, id := range []struct {
				name string
				v    *string
				dst  *string
			}{{"gclid", ai.Gclid, &e.Gclid}, {"gbraid", ai.Gbraid, &e.Gbraid}, {"wbraid", ai.Wbraid, &e.Wbraid}} {
				if id.v == nil {
					continue
				}
				if *id.v == "" || fakeserver.IsHexish(*id.v) {
					return 0, n, 0, violation(p+".ad_identifiers."+id.name, "click ids are sent as received, not empty or hashed", "INVALID_FORMAT")
				}
				*id.dst = *id.v
			}
		}
		if len(emails)+len(phones) == 0 && e.Gclid == "" && e.Gbraid == "" && e.Wbraid == "" {
			return 0, n, 0, violation(p, "an event needs a user identifier or an ad identifier", "INVALID_EVENT")
		}
		if ev.ConversionValue != nil {
			if *ev.ConversionValue < 0 {
				return 0, n, 0, violation(p+".conversion_value", "must not be negative", "INVALID_ARGUMENT")
			}
			if ev.Currency == nil || !currencyRE.MatchString(*ev.Currency) {
				return 0, n, 0, violation(p+".currency", "a 3-letter currency is required with a value", "INVALID_CURRENCY_CODE")
			}
			e.Currency = *ev.Currency
		}
		got[i] = e
	}
	if req.ValidateOnly == nil || !*req.ValidateOnly {
		s.mu.Lock()
		for _, e := range got {
			s.events = append(s.events, e)
			s.eventIDs[e.TransactionID]++
		}
		s.mu.Unlock()
	}
	fakeserver.WriteJSON(w, http.StatusOK, map[string]string{"requestId": s.nextRequestID()})
	return http.StatusOK, n, 0, nil
}

// --- Google Ads uploadClickConversions ---

type wireClickConsent struct {
	AdUserData        *string `json:"adUserData"`
	AdPersonalization *string `json:"adPersonalization"`
}

type wireClick struct {
	Gclid              *string           `json:"gclid"`
	Gbraid             *string           `json:"gbraid"`
	Wbraid             *string           `json:"wbraid"`
	ConversionAction   *string           `json:"conversionAction"`
	ConversionDateTime *string           `json:"conversionDateTime"`
	ConversionValue    *float64          `json:"conversionValue"`
	CurrencyCode       *string           `json:"currencyCode"`
	OrderID            *string           `json:"orderId"`
	Consent            *wireClickConsent `json:"consent"`
}

type wireUpload struct {
	Conversions    []wireClick `json:"conversions"`
	PartialFailure *bool       `json:"partialFailure"`
	ValidateOnly   *bool       `json:"validateOnly"`
	DebugEnabled   *bool       `json:"debugEnabled"`
	JobID          *int64      `json:"jobId"`
}

var (
	dateTimeRE  = regexp.MustCompile(`^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2}$`)
	adsConsents = map[string]bool{"GRANTED": true, "DENIED": true, "UNSPECIFIED": true}
)

func (s *Server) adsErr(code int, status, message string, errorCode map[string]string, detail string) *apiErr {
	return &apiErr{code: code, status: status, message: message,
		details: []any{AdsFailure(s.cfg.AdsVersion, errorCode, detail)}}
}

func (s *Server) upload(w http.ResponseWriter, r *http.Request, body []byte) (int, int, int, *apiErr) {
	m := adsPath.FindStringSubmatch(r.URL.Path)
	version, cid := m[1], m[2]
	if version != s.cfg.AdsVersion {
		return 0, 0, 0, &apiErr{code: 404, status: "NOT_FOUND", message: fmt.Sprintf("Version %s is not supported.", version)}
	}
	if !digitsRE.MatchString(cid) {
		return 0, 0, 0, s.adsErr(400, "INVALID_ARGUMENT", invalidArgument, map[string]string{"requestError": "INVALID_CUSTOMER_ID"}, "customer id must be digits only")
	}
	dev := r.Header.Get("developer-token")
	if dev == "" {
		return 0, 0, 0, s.adsErr(401, "UNAUTHENTICATED", "The caller does not have permission",
			map[string]string{"authenticationError": "DEVELOPER_TOKEN_PARAMETER_MISSING"}, "developer-token header is missing")
	}
	if s.cfg.DeveloperToken != "" && dev != s.cfg.DeveloperToken {
		return 0, 0, 0, s.adsErr(401, "UNAUTHENTICATED", "The caller does not have permission",
			map[string]string{"authenticationError": "DEVELOPER_TOKEN_INVALID"}, "developer-token is not valid")
	}
	login := r.Header.Get("login-customer-id")
	if _, present := r.Header["Login-Customer-Id"]; present && !digitsRE.MatchString(login) {
		return 0, 0, 0, s.adsErr(400, "INVALID_ARGUMENT", invalidArgument,
			map[string]string{"authenticationError": "LOGIN_CUSTOMER_ID_PARAMETER_INVALID"}, "login-customer-id must be digits only")
	}
	var req wireUpload
	if err := fakeserver.Decode(body, &req); err != nil {
		return 0, 0, 0, decodeErr(err)
	}
	n := len(req.Conversions)
	if req.PartialFailure == nil || !*req.PartialFailure {
		return 0, n, 0, s.adsErr(400, "INVALID_ARGUMENT", invalidArgument, map[string]string{"fieldError": "REQUIRED"}, "partialFailure must be true")
	}
	if n == 0 {
		return 0, n, 0, s.adsErr(400, "INVALID_ARGUMENT", invalidArgument, map[string]string{"fieldError": "REQUIRED"}, "conversions is required")
	}
	if n > MaxClickConversions {
		return 0, n, 0, s.adsErr(400, "INVALID_ARGUMENT", invalidArgument,
			map[string]string{"conversionUploadError": "TOO_MANY_CONVERSIONS_IN_REQUEST"},
			fmt.Sprintf("at most %d conversions per request, got %d", MaxClickConversions, n))
	}
	now := s.now()
	actionRE := regexp.MustCompile(`^customers/` + regexp.QuoteMeta(cid) + `/conversionActions/[0-9]+$`)
	results := make([]map[string]any, n)
	var errs []any
	var msgs []string
	var accepted []Click
	for i, c := range req.Conversions {
		fail := func(errorCode map[string]string, message string, field string) {
			path := []any{"conversions", i}
			if field != "" {
				path = append(path, field)
			}
			errs = append(errs, adsErrorJSON(errorCode, message, path...))
			loc := fmt.Sprintf("conversions[%d]", i)
			if field != "" {
				loc += "." + field
			}
			msgs = append(msgs, message+", at "+loc)
			results[i] = map[string]any{}
		}
		click, field, clickID := "", "", ""
		set := 0
		for _, id := range []struct {
			name string
			v    *string
		}{{"gclid", c.Gclid}, {"gbraid", c.Gbraid}, {"wbraid", c.Wbraid}} {
			if id.v != nil {
				set++
				field, clickID = id.name, *id.v
			}
		}
		click = clickID
		s.mu.Lock()
		injected, isFailing := s.failClicks[click]
		s.mu.Unlock()
		switch {
		case set != 1:
			fail(map[string]string{"conversionUploadError": "EXACTLY_ONE_CLICK_ID_REQUIRED"}, "Exactly one of gclid, gbraid, wbraid must be set.", "")
			continue
		case click == "":
			fail(map[string]string{"conversionUploadError": "UNPARSEABLE_GCLID"}, "The click id is empty.", field)
			continue
		case c.ConversionAction == nil || !actionRE.MatchString(*c.ConversionAction):
			fail(map[string]string{"conversionUploadError": "INVALID_CONVERSION_ACTION"}, "The conversion action is missing or not of this customer.", "conversionAction")
			continue
		case c.ConversionDateTime == nil || !dateTimeRE.MatchString(*c.ConversionDateTime):
			fail(map[string]string{"dateError": "INVALID_FIELD_VALUES_IN_DATE_TIME"}, "conversionDateTime must look like 2026-10-14 16:45:18+02:00.", "conversionDateTime")
			continue
		case c.OrderID == nil || *c.OrderID == "":
			fail(map[string]string{"fieldError": "REQUIRED"}, "orderId is required (it is the dedup key).", "orderId")
			continue
		case c.Consent == nil || c.Consent.AdUserData == nil || c.Consent.AdPersonalization == nil:
			fail(map[string]string{"fieldError": "REQUIRED"}, "consent.adUserData and consent.adPersonalization are required.", "consent")
			continue
		case !adsConsents[*c.Consent.AdUserData] || !adsConsents[*c.Consent.AdPersonalization]:
			fail(map[string]string{"requestError": "INVALID_ENUM_VALUE"}, "consent values are GRANTED, DENIED or UNSPECIFIED.", "consent")
			continue
		case c.ConversionValue != nil && (c.CurrencyCode == nil || !currencyRE.MatchString(*c.CurrencyCode)):
			fail(map[string]string{"currencyCodeError": "UNSUPPORTED"}, "A 3-letter currencyCode is required with a value.", "currencyCode")
			continue
		case isFailing:
			fail(map[string]string{"conversionUploadError": injected.code}, injected.message, field)
			continue
		}
		t, perr := time.Parse(time.DateTime+"-07:00", *c.ConversionDateTime)
		if perr != nil {
			fail(map[string]string{"dateError": "INVALID_FIELD_VALUES_IN_DATE_TIME"}, "conversionDateTime is not a valid date and time.", "conversionDateTime")
			continue
		}
		if now.Sub(t) > MaxEventAge {
			fail(map[string]string{"conversionUploadError": "EXPIRED_EVENT"}, "The conversion is older than 90 days.", "conversionDateTime")
			continue
		}
		if t.Sub(now) > MaxSkew {
			fail(map[string]string{"conversionUploadError": "CONVERSION_PRECEDES_EVENT"}, "The conversion is in the future.", "conversionDateTime")
			continue
		}
		cl := Click{CustomerID: cid, ConversionAction: *c.ConversionAction, ConversionDateTime: *c.ConversionDateTime,
			OrderID: *c.OrderID, Value: c.ConversionValue, Consent: Consent{*c.Consent.AdUserData, *c.Consent.AdPersonalization},
			LoginCustomerID: login, DeveloperToken: dev}
		if c.CurrencyCode != nil {
			cl.Currency = *c.CurrencyCode
		}
		res := map[string]any{"conversionAction": cl.ConversionAction, "conversionDateTime": cl.ConversionDateTime}
		switch field {
		case "gclid":
			cl.Gclid = click
		case "gbraid":
			cl.Gbraid = click
		case "wbraid":
			cl.Wbraid = click
		}
		res[field] = click
		results[i] = res
		accepted = append(accepted, cl)
	}
	if req.ValidateOnly == nil || !*req.ValidateOnly {
		s.mu.Lock()
		for _, c := range accepted {
			s.clicks = append(s.clicks, c)
			s.orderIDs[c.OrderID]++
		}
		s.mu.Unlock()
	}
	resp := map[string]any{"results": results}
	if len(errs) > 0 {
		resp["partialFailureError"] = map[string]any{
			"code":    3,
			"message": strings.Join(msgs, "; "),
			"details": []any{map[string]any{
				"@type":  "type.googleapis.com/google.ads.googleads." + s.cfg.AdsVersion + ".errors.GoogleAdsFailure",
				"errors": errs,
			}},
		}
	}
	fakeserver.WriteJSON(w, http.StatusOK, resp)
	return http.StatusOK, n, len(errs), nil
}

// --- fault helpers ---

// Throttled returns a fault answering 429 RESOURCE_EXHAUSTED with a
// Retry-After header in seconds when retryAfter > 0.
func Throttled(retryAfter time.Duration) Fault {
	return Fault{Status: 429, Header: fakeserver.RetryAfterHeader(retryAfter),
		Body: Envelope(429, "RESOURCE_EXHAUSTED", "Quota exceeded.")}
}

// Unavailable returns a fault answering 503 UNAVAILABLE.
func Unavailable() Fault {
	return Fault{Status: 503, Body: Envelope(503, "UNAVAILABLE", "The service is currently unavailable.")}
}

// Aborted returns a fault answering 409 ABORTED.
func Aborted() Fault {
	return Fault{Status: 409, Body: Envelope(409, "ABORTED", "The operation was aborted.")}
}

// PermissionDenied returns a fault answering 403 PERMISSION_DENIED.
func PermissionDenied() Fault {
	return Fault{Status: 403, Body: Envelope(403, "PERMISSION_DENIED", "The caller does not have permission")}
}

// Hang returns a fault that answers nothing for d (or until the client
// gives up), then handles the request normally.
func Hang(d time.Duration) Fault { return Fault{Hang: d} }
