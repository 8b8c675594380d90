// Package instruction is a client's documented instruction to forward the
// data of one campaign to ad platforms: which platform receives what
// (conversions, audiences), which events count as which conversion, which
// audience segments, and the platform ids and credentials to use.
//
// It parses and validates the JSON the client API accepts (Parse), keeps
// credentials apart from the rest so they can be stored encrypted (Key) and
// never shown again, checks destinations against the deployment's
// allow-list (AllowList), and gives the forwarder a platform-neutral view
// of what to send (Spec.Conversions, Spec.Audiences).
//
// It does no I/O.
package instruction

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/jobpixel/jobpixel/consent"
	"github.com/jobpixel/jobpixel/forward"
	"github.com/jobpixel/jobpixel/forward/google"
	"github.com/jobpixel/jobpixel/forward/linkedin"
	"github.com/jobpixel/jobpixel/schemas"
)

// Default API roots of the platforms (their documented EU-usable hosts).
const (
	DefaultMetaEndpoint        = "https://graph.facebook.com"
	DefaultDataManagerEndpoint = "https://datamanager.googleapis.com"
	DefaultAdsEndpoint         = "https://googleads.googleapis.com"
	DefaultLinkedInEndpoint    = "https://api.linkedin.com"

	DefaultGoogleTokenEndpoint   = google.DefaultTokenURL
	DefaultLinkedInTokenEndpoint = linkedin.DefaultTokenURL
)

// Segment limits.
const (
	DefaultSegmentDays = 30
	MaxSegmentDays     = 180
)

// Segment presets.
const (
	// PresetViewedNotApplied: viewed a vacancy of the campaign in the last
	// Days days and did not apply.
	PresetViewedNotApplied = "viewed_not_applied"
	// PresetApplied: applied in the last Days days.
	PresetApplied = "applied"
)

// Segment says who is in an audience: visitors with an Include event in
// the last Days days and no Exclude event in the same window.
type Segment struct {
	// Preset is a named segment (PresetViewedNotApplied, PresetApplied);
	// it fills Include and Exclude.
	Preset  string   `json:"preset,omitempty"`
	Include []string `json:"include"`
	Exclude []string `json:"exclude"`
	// Days is the window; 0 on input means DefaultSegmentDays.
	Days int `json:"days"`
}

// Value is a fixed conversion value.
type Value struct {
	Amount   string `json:"amount"`
	Currency string `json:"currency"`
}

// MetaConversion maps an event to a Conversions API event of a pixel.
type MetaConversion struct {
	Event     string `json:"event"`
	PixelID   string `json:"pixel_id"`
	EventName string `json:"event_name"`
	Value     *Value `json:"value,omitempty"`
}

// MetaAudience fills a Custom Audience with a segment.
type MetaAudience struct {
	AudienceID string  `json:"audience_id"`
	Segment    Segment `json:"segment"`
}

// Meta is what Meta receives.
type Meta struct {
	Endpoint      string `json:"endpoint"`
	TestEventCode string `json:"test_event_code,omitempty"`
	AccessToken   string `json:"access_token,omitempty"` // input only; stored encrypted
	// TokenExpiresAt is when the access token expires (RFC 3339), for a
	// long-lived or system-user token that does; empty: it does not.
	// Shown as the instruction's status from 7 days before.
	TokenExpiresAt string           `json:"token_expires_at,omitempty"`
	Conversions    []MetaConversion `json:"conversions"`
	Audiences      []MetaAudience   `json:"audiences"`
}

// Google conversion APIs.
const (
	GoogleDataManager = "data_manager" // Data Manager events:ingest
	GoogleAdsClick    = "ads_click"    // Google Ads uploadClickConversions
)

// GoogleConversion maps an event to a conversion action.
type GoogleConversion struct {
	Event              string `json:"event"`
	ConversionActionID string `json:"conversion_action_id"`
	// API is GoogleDataManager (default) or GoogleAdsClick.
	API   string `json:"api"`
	Value *Value `json:"value,omitempty"`
}

// GoogleAudience fills a user list (Data Manager audience members).
type GoogleAudience struct {
	UserListID string  `json:"user_list_id"`
	Segment    Segment `json:"segment"`
}

// Google is what Google receives.
type Google struct {
	DataManagerEndpoint string `json:"data_manager_endpoint"`
	AdsEndpoint         string `json:"ads_endpoint"`
	CustomerID          string `json:"customer_id"`
	LoginCustomerID     string `json:"login_customer_id,omitempty"`
	AccountType         string `json:"account_type"`
	// CustomerMatchTermsAccepted records that the advertiser accepted
	// Google's Customer Match terms; required for audiences.
	CustomerMatchTermsAccepted bool `json:"customer_match_terms_accepted"`
	// Credentials, input only (stored sealed): an AccessToken, or an OAuth
	// 2.0 client (ClientID, ClientSecret) with a RefreshToken, or a
	// ServiceAccountKey (the JSON key file, as an object or a string).
	AccessToken       string          `json:"access_token,omitempty"`
	RefreshToken      string          `json:"refresh_token,omitempty"`
	ClientID          string          `json:"client_id,omitempty"`
	ClientSecret      string          `json:"client_secret,omitempty"`
	ServiceAccountKey json.RawMessage `json:"service_account_key,omitempty"`
	DeveloperToken    string          `json:"developer_token,omitempty"` // input only
	// TokenEndpoint is where refresh tokens and service accounts get their
	// access tokens; set (default DefaultGoogleTokenEndpoint) only with
	// such credentials.
	TokenEndpoint string             `json:"token_endpoint,omitempty"`
	Conversions   []GoogleConversion `json:"conversions"`
	Audiences     []GoogleAudience   `json:"audiences"`
}

// LinkedInConversion maps an event to a conversion rule.
type LinkedInConversion struct {
	Event            string `json:"event"`
	ConversionRuleID string `json:"conversion_rule_id"`
	Value            *Value `json:"value,omitempty"`
}

// LinkedInAudience fills a DMP segment.
type LinkedInAudience struct {
	SegmentID string  `json:"segment_id"`
	Segment   Segment `json:"segment"`
}

// LinkedIn is what LinkedIn receives.
type LinkedIn struct {
	Endpoint string `json:"endpoint"`
	// Credentials, input only (stored sealed): an AccessToken, or an app
	// (ClientID, ClientSecret) with a RefreshToken.
	AccessToken  string `json:"access_token,omitempty"`
	RefreshToken string `json:"refresh_token,omitempty"`
	ClientID     string `json:"client_id,omitempty"`
	ClientSecret string `json:"client_secret,omitempty"`
	// TokenEndpoint is where the refresh token gets access tokens; set
	// (default DefaultLinkedInTokenEndpoint) only with a refresh token.
	TokenEndpoint string               `json:"token_endpoint,omitempty"`
	Conversions   []LinkedInConversion `json:"conversions"`
	Audiences     []LinkedInAudience   `json:"audiences"`
}

// Spec is an instruction without its credentials: what is stored in clear
// and shown by the API.
type Spec struct {
	// RequestedBy names the person who gave the instruction (free text).
	RequestedBy string `json:"requested_by,omitempty"`
	// Note documents the instruction (e.g. the contract clause).
	Note string `json:"note,omitempty"`
	// CredentialsSet names the credentials stored with the instruction
	// (e.g. "meta.access_token"), never their values. Set by Parse.
	CredentialsSet []string  `json:"credentials_set,omitempty"`
	Meta           *Meta     `json:"meta,omitempty"`
	Google         *Google   `json:"google,omitempty"`
	LinkedIn       *LinkedIn `json:"linkedin,omitempty"`
}

// Credentials are the secrets of an instruction; stored only sealed (Key).
// Per platform, one way to authenticate is set: an access token, a
// refresh token with its OAuth client, or (Google) a service account key.
type Credentials struct {
	MetaAccessToken         string `json:"meta_access_token,omitempty"`
	GoogleAccessToken       string `json:"google_access_token,omitempty"`
	GoogleRefreshToken      string `json:"google_refresh_token,omitempty"`
	GoogleClientID          string `json:"google_client_id,omitempty"`
	GoogleClientSecret      string `json:"google_client_secret,omitempty"`
	GoogleServiceAccountKey string `json:"google_service_account_key,omitempty"`
	GoogleDevToken          string `json:"google_developer_token,omitempty"`
	LinkedInAccessToken     string `json:"linkedin_access_token,omitempty"`
	LinkedInRefreshToken    string `json:"linkedin_refresh_token,omitempty"`
	LinkedInClientID        string `json:"linkedin_client_id,omitempty"`
	LinkedInClientSecret    string `json:"linkedin_client_secret,omitempty"`
}

// IsZero reports whether no credential is set.
func (c Credentials) IsZero() bool { return c == Credentials{} }

// Names lists the credentials that are set, by field path, never their
// values: what the API may show.
func (c Credentials) Names() []string {
	var out []string
	add := func(v, name string) {
		if v != "" {
			out = append(out, name)
		}
	}
	add(c.MetaAccessToken, "meta.access_token")
	add(c.GoogleAccessToken, "google.access_token")
	add(c.GoogleRefreshToken, "google.refresh_token")
	add(c.GoogleClientID, "google.client_id")
	add(c.GoogleClientSecret, "google.client_secret")
	add(c.GoogleServiceAccountKey, "google.service_account_key")
	add(c.GoogleDevToken, "google.developer_token")
	add(c.LinkedInAccessToken, "linkedin.access_token")
	add(c.LinkedInRefreshToken, "linkedin.refresh_token")
	add(c.LinkedInClientID, "linkedin.client_id")
	add(c.LinkedInClientSecret, "linkedin.client_secret")
	return out
}

// Error is a validation error naming the offending field.
type Error struct {
	Field string
	Msg   string
}

func (e *Error) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

func errf(field, format string, args ...any) *Error {
	return &Error{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// MaxBody bounds an instruction's JSON.
const MaxBody = 64 << 10

// Parse reads an instruction from the client API. Credentials a platform
// section leaves out are taken from prev (the campaign's previous version),
// so a client can change an instruction without restating secrets it can
// no longer read; a section that gives any of its platform's access
// credentials (access token, refresh token, client id or secret, service
// account key) replaces all of prev's for that platform (the developer
// token is kept apart). Every destination must pass allow. The returned
// Spec has no credentials in it.
func Parse(body []byte, prev Credentials, allow AllowList) (Spec, Credentials, error) {
	var s Spec
	if len(body) > MaxBody {
		return s, Credentials{}, errf("", "instruction larger than %d bytes", MaxBody)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		const unknown = `json: unknown field "`
		if m := err.Error(); strings.HasPrefix(m, unknown) && strings.HasSuffix(m, `"`) {
			return s, Credentials{}, errf(m[len(unknown):len(m)-1], "unknown field (the README's Instructions section lists the fields)")
		}
		return s, Credentials{}, errf("", "invalid JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return s, Credentials{}, errf("", "invalid JSON: data after the object")
	}
	var c Credentials
	if s.Meta != nil {
		c.MetaAccessToken = pick(s.Meta.AccessToken, prev.MetaAccessToken)
		s.Meta.AccessToken = ""
	}
	if g := s.Google; g != nil {
		sa, err := rawString(g.ServiceAccountKey)
		if err != nil {
			return s, Credentials{}, errf("google.service_account_key", "%v", err)
		}
		given := [4]string{trim(g.AccessToken), trim(g.RefreshToken), trim(g.ClientID), trim(g.ClientSecret)}
		auth := [4]string{prev.GoogleAccessToken, prev.GoogleRefreshToken, prev.GoogleClientID, prev.GoogleClientSecret}
		c.GoogleServiceAccountKey = prev.GoogleServiceAccountKey
		if given != [4]string{} || sa != "" {
			auth, c.GoogleServiceAccountKey = given, sa
		}
		c.GoogleAccessToken, c.GoogleRefreshToken, c.GoogleClientID, c.GoogleClientSecret = auth[0], auth[1], auth[2], auth[3]
		c.GoogleDevToken = pick(g.DeveloperToken, prev.GoogleDevToken)
		g.AccessToken, g.RefreshToken, g.ClientID, g.ClientSecret, g.ServiceAccountKey, g.DeveloperToken = "", "", "", "", nil, ""
	}
	if l := s.LinkedIn; l != nil {
		given := [4]string{trim(l.AccessToken), trim(l.RefreshToken), trim(l.ClientID), trim(l.ClientSecret)}
		auth := [4]string{prev.LinkedInAccessToken, prev.LinkedInRefreshToken, prev.LinkedInClientID, prev.LinkedInClientSecret}
		if given != [4]string{} {
			auth = given
		}
		c.LinkedInAccessToken, c.LinkedInRefreshToken, c.LinkedInClientID, c.LinkedInClientSecret = auth[0], auth[1], auth[2], auth[3]
		l.AccessToken, l.RefreshToken, l.ClientID, l.ClientSecret = "", "", "", ""
	}
	if err := s.normalize(c, allow); err != nil {
		return s, Credentials{}, err
	}
	s.CredentialsSet = c.Names()
	return s, c, nil
}

func pick(v, prev string) string {
	if v = trim(v); v != "" {
		return v
	}
	return prev
}

func trim(v string) string { return strings.TrimSpace(v) }

// rawString returns a JSON value given as an object or as a string holding
// one, as text ("" for none).
func rawString(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	if raw[0] == '"' {
		var v string
		if err := json.Unmarshal(raw, &v); err != nil {
			return "", err
		}
		return trim(v), nil
	}
	if raw[0] != '{' {
		return "", errors.New("want the JSON key file, as an object or a string")
	}
	return string(raw), nil
}

// oauthClient checks one way of authenticating on a platform: exactly one
// of an access token, a refresh token with client id and secret, or (sa,
// Google only) a service account key; prefix names the section.
func oauthClient(prefix, access, refresh, id, secret, sa string) *Error {
	ways := 0
	for _, v := range []string{access, refresh + id + secret, sa} {
		if v != "" {
			ways++
		}
	}
	want := "access_token, or refresh_token with client_id and client_secret"
	if prefix == "google" {
		want += ", or service_account_key"
	}
	switch {
	case ways == 0:
		return errf(prefix+".access_token", "required: give %s", want)
	case ways > 1:
		return errf(prefix, "give one of %s, not several", want)
	case access != "" || sa != "":
		return nil
	case refresh == "":
		return errf(prefix+".refresh_token", "required with client_id and client_secret")
	case id == "":
		return errf(prefix+".client_id", "required with refresh_token")
	case secret == "":
		return errf(prefix+".client_secret", "required with refresh_token")
	}
	return nil
}

// tokenEndpoint fills and checks a token endpoint, which only credentials
// that refresh (refreshing true) use.
func tokenEndpoint(field string, v *string, def string, refreshing bool, allow AllowList) *Error {
	if !refreshing {
		if *v != "" {
			return errf(field, "only with refresh_token or service_account_key")
		}
		return nil
	}
	return endpoint(field, v, def, allow)
}

// Decode reads a stored Spec (as written by Encode).
func Decode(stored string) (Spec, error) {
	var s Spec
	if stored == "" {
		return s, nil
	}
	if err := json.Unmarshal([]byte(stored), &s); err != nil {
		return s, fmt.Errorf("instruction: decode stored spec: %w", err)
	}
	return s, nil
}

// Encode returns the stored form of s (it holds no credentials).
func (s Spec) Encode() string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err) // plain structs always marshal
	}
	return string(b)
}

// Platforms lists the platforms s sends anything to.
func (s Spec) Platforms() []consent.Platform {
	var out []consent.Platform
	if s.Google != nil && len(s.Google.Conversions)+len(s.Google.Audiences) > 0 {
		out = append(out, consent.Google)
	}
	if s.Meta != nil && len(s.Meta.Conversions)+len(s.Meta.Audiences) > 0 {
		out = append(out, consent.Meta)
	}
	if s.LinkedIn != nil && len(s.LinkedIn.Conversions)+len(s.LinkedIn.Audiences) > 0 {
		out = append(out, consent.LinkedIn)
	}
	return out
}

var eventNames = map[string]schemas.Event{
	"page_view": schemas.EventPageView, "apply_click": schemas.EventApplyClick,
	"application": schemas.EventApplication, "vacancy_email": schemas.EventVacancyEmail,
}

func checkEvent(field, e string) *Error {
	if _, ok := eventNames[e]; !ok {
		return errf(field, "unknown event %q (want page_view, apply_click, application or vacancy_email)", e)
	}
	return nil
}

// numericID checks a platform id that is a plain decimal number (Meta
// pixel and audience ids, Google conversion action and user list ids,
// LinkedIn conversion rule and segment ids) of at most maxDigits digits.
func numericID(field, id string, maxDigits int) *Error {
	if id == "" || len(id) > maxDigits || strings.Trim(id, "0123456789") != "" {
		return errf(field, "must be a numeric id of 1 to %d digits, got %q", maxDigits, id)
	}
	return nil
}

// googleCustomerID checks a Google Ads customer id: 10 digits, written
// plain (1234567890) or as Google shows it (123-456-7890).
func googleCustomerID(field, id string) *Error {
	v := id
	if len(id) == 12 && id[3] == '-' && id[7] == '-' {
		v = id[:3] + id[4:7] + id[8:]
	}
	if len(v) != 10 || strings.Trim(v, "0123456789") != "" {
		return errf(field, "must be a Google Ads customer id: 10 digits, as 1234567890 or 123-456-7890, got %q", id)
	}
	return nil
}

// Longest ids: Meta's are 64-bit numbers (at most 20 digits), Google's and
// LinkedIn's int64 (19).
const (
	maxMetaID   = 20
	maxInt64IDs = 19
)

func (v *Value) check(field string) *Error {
	if v == nil {
		return nil
	}
	if err := (forward.Value{Amount: v.Amount, Currency: v.Currency}).Check(); err != nil || v.Amount == "" {
		return errf(field, "must be {\"amount\": \"12.50\", \"currency\": \"EUR\"}")
	}
	return nil
}

func (g *Segment) normalize(field string) *Error {
	switch g.Preset {
	case "":
	case PresetViewedNotApplied, PresetApplied:
		if len(g.Include)+len(g.Exclude) > 0 {
			return errf(field+".preset", "give either a preset or include/exclude, not both")
		}
		if g.Preset == PresetViewedNotApplied {
			g.Include, g.Exclude = []string{"page_view"}, []string{"application"}
		} else {
			g.Include, g.Exclude = []string{"application"}, []string{}
		}
	default:
		return errf(field+".preset", "unknown preset %q (want %q or %q)", g.Preset, PresetViewedNotApplied, PresetApplied)
	}
	if len(g.Include) == 0 {
		return errf(field+".include", "at least one event is required")
	}
	if g.Exclude == nil {
		g.Exclude = []string{}
	}
	for i, e := range g.Include {
		if err := checkEvent(fmt.Sprintf("%s.include[%d]", field, i), e); err != nil {
			return err
		}
	}
	for i, e := range g.Exclude {
		if err := checkEvent(fmt.Sprintf("%s.exclude[%d]", field, i), e); err != nil {
			return err
		}
		if slices.Contains(g.Include, e) {
			return errf(fmt.Sprintf("%s.exclude[%d]", field, i), "event %q is also included", e)
		}
	}
	slices.Sort(g.Include)
	g.Include = slices.Compact(g.Include)
	slices.Sort(g.Exclude)
	g.Exclude = slices.Compact(g.Exclude)
	if g.Days == 0 {
		g.Days = DefaultSegmentDays
	}
	if g.Days < 1 || g.Days > MaxSegmentDays {
		return errf(field+".days", "must be 1 to %d", MaxSegmentDays)
	}
	return nil
}

func endpoint(field string, v *string, def string, allow AllowList) *Error {
	if *v == "" {
		*v = def
	}
	*v = strings.TrimRight(*v, "/")
	if err := allow.Check(*v); err != nil {
		return errf(field, "%v", err)
	}
	return nil
}

// normalize fills defaults and validates s with its credentials c.
func (s *Spec) normalize(c Credentials, allow AllowList) error {
	s.RequestedBy = strings.TrimSpace(s.RequestedBy)
	s.Note = strings.TrimSpace(s.Note)
	if len(s.RequestedBy) > 200 {
		return errf("requested_by", "at most 200 characters")
	}
	if len(s.Note) > 2000 {
		return errf("note", "at most 2000 characters")
	}
	if s.Meta == nil && s.Google == nil && s.LinkedIn == nil {
		return errf("", "an instruction names at least one platform (meta, google, linkedin); to stop forwarding, revoke it")
	}
	if s.Meta != nil {
		if err := s.Meta.normalize(c, allow); err != nil {
			return err
		}
	}
	if s.Google != nil {
		if err := s.Google.normalize(c, allow); err != nil {
			return err
		}
	}
	if s.LinkedIn != nil {
		if err := s.LinkedIn.normalize(c, allow); err != nil {
			return err
		}
	}
	return nil
}

// normalize fills the defaults of m and validates it with the Meta token of c.
func (m *Meta) normalize(c Credentials, allow AllowList) error {
	if len(m.Conversions)+len(m.Audiences) == 0 {
		return errf("meta", "give conversions and/or audiences")
	}
	if err := endpoint("meta.endpoint", &m.Endpoint, DefaultMetaEndpoint, allow); err != nil {
		return err
	}
	if c.MetaAccessToken == "" {
		return errf("meta.access_token", "required")
	}
	if m.TokenExpiresAt != "" {
		at, err := time.Parse(time.RFC3339, m.TokenExpiresAt)
		if err != nil {
			return errf("meta.token_expires_at", "want an RFC 3339 time, e.g. 2026-03-01T00:00:00Z")
		}
		m.TokenExpiresAt = at.UTC().Format(time.RFC3339)
	}
	if len(m.TestEventCode) > 100 {
		return errf("meta.test_event_code", "too long")
	}
	for i := range m.Conversions {
		cv := &m.Conversions[i]
		f := fmt.Sprintf("meta.conversions[%d]", i)
		if err := checkEvent(f+".event", cv.Event); err != nil {
			return err
		}
		if err := numericID(f+".pixel_id", cv.PixelID, maxMetaID); err != nil {
			return err
		}
		cv.EventName = strings.TrimSpace(cv.EventName)
		if cv.EventName == "" || len(cv.EventName) > 50 {
			return errf(f+".event_name", "required, at most 50 characters (e.g. \"SubmitApplication\")")
		}
		if err := cv.Value.check(f + ".value"); err != nil {
			return err
		}
	}
	for i := range m.Audiences {
		au := &m.Audiences[i]
		f := fmt.Sprintf("meta.audiences[%d]", i)
		if err := numericID(f+".audience_id", au.AudienceID, maxMetaID); err != nil {
			return err
		}
		if err := au.Segment.normalize(f + ".segment"); err != nil {
			return err
		}
	}
	return nil
}

// normalize fills the defaults of g (account type, each conversion's API)
// and validates it with the Google credentials of c.
func (g *Google) normalize(c Credentials, allow AllowList) error {
	if len(g.Conversions)+len(g.Audiences) == 0 {
		return errf("google", "give conversions and/or audiences")
	}
	if err := endpoint("google.data_manager_endpoint", &g.DataManagerEndpoint, DefaultDataManagerEndpoint, allow); err != nil {
		return err
	}
	if err := endpoint("google.ads_endpoint", &g.AdsEndpoint, DefaultAdsEndpoint, allow); err != nil {
		return err
	}
	if err := googleCustomerID("google.customer_id", g.CustomerID); err != nil {
		return err
	}
	if g.LoginCustomerID != "" {
		if err := googleCustomerID("google.login_customer_id", g.LoginCustomerID); err != nil {
			return err
		}
	}
	switch g.AccountType {
	case "":
		g.AccountType = "GOOGLE_ADS"
	case "GOOGLE_ADS", "DISPLAY_VIDEO_PARTNER", "DISPLAY_VIDEO_ADVERTISER", "DATA_PARTNER":
	default:
		return errf("google.account_type", "unknown account type %q", g.AccountType)
	}
	if err := oauthClient("google", c.GoogleAccessToken, c.GoogleRefreshToken, c.GoogleClientID, c.GoogleClientSecret, c.GoogleServiceAccountKey); err != nil {
		return err
	}
	if c.GoogleServiceAccountKey != "" {
		if _, err := google.ServiceAccount([]byte(c.GoogleServiceAccountKey), DefaultGoogleTokenEndpoint, nil, nil); err != nil {
			return errf("google.service_account_key", "%v", strings.TrimPrefix(err.Error(), "google: service account key: "))
		}
	}
	if err := tokenEndpoint("google.token_endpoint", &g.TokenEndpoint, DefaultGoogleTokenEndpoint,
		c.GoogleAccessToken == "", allow); err != nil {
		return err
	}
	for i := range g.Conversions {
		cv := &g.Conversions[i]
		f := fmt.Sprintf("google.conversions[%d]", i)
		if err := checkEvent(f+".event", cv.Event); err != nil {
			return err
		}
		if err := numericID(f+".conversion_action_id", cv.ConversionActionID, maxInt64IDs); err != nil {
			return err
		}
		switch cv.API {
		case "":
			cv.API = GoogleDataManager
		case GoogleDataManager:
		case GoogleAdsClick:
			if c.GoogleDevToken == "" {
				return errf("google.developer_token", "required for %q conversions", GoogleAdsClick)
			}
		default:
			return errf(f+".api", "want %q or %q", GoogleDataManager, GoogleAdsClick)
		}
		if err := cv.Value.check(f + ".value"); err != nil {
			return err
		}
	}
	if len(g.Audiences) > 0 && !g.CustomerMatchTermsAccepted {
		return errf("google.customer_match_terms_accepted", "must be true to upload audience members (Customer Match terms of service)")
	}
	for i := range g.Audiences {
		au := &g.Audiences[i]
		f := fmt.Sprintf("google.audiences[%d]", i)
		if err := numericID(f+".user_list_id", au.UserListID, maxInt64IDs); err != nil {
			return err
		}
		if err := au.Segment.normalize(f + ".segment"); err != nil {
			return err
		}
	}
	return nil
}

// normalize validates l with the LinkedIn token of c.
func (l *LinkedIn) normalize(c Credentials, allow AllowList) error {
	if len(l.Conversions)+len(l.Audiences) == 0 {
		return errf("linkedin", "give conversions and/or audiences")
	}
	if err := endpoint("linkedin.endpoint", &l.Endpoint, DefaultLinkedInEndpoint, allow); err != nil {
		return err
	}
	if err := oauthClient("linkedin", c.LinkedInAccessToken, c.LinkedInRefreshToken, c.LinkedInClientID, c.LinkedInClientSecret, ""); err != nil {
		return err
	}
	if err := tokenEndpoint("linkedin.token_endpoint", &l.TokenEndpoint, DefaultLinkedInTokenEndpoint,
		c.LinkedInAccessToken == "", allow); err != nil {
		return err
	}
	for i := range l.Conversions {
		cv := &l.Conversions[i]
		f := fmt.Sprintf("linkedin.conversions[%d]", i)
		if err := checkEvent(f+".event", cv.Event); err != nil {
			return err
		}
		if err := numericID(f+".conversion_rule_id", strings.TrimPrefix(cv.ConversionRuleID, "urn:lla:llaPartnerConversion:"), maxInt64IDs); err != nil {
			return err
		}
		if err := cv.Value.check(f + ".value"); err != nil {
			return err
		}
	}
	for i := range l.Audiences {
		au := &l.Audiences[i]
		f := fmt.Sprintf("linkedin.audiences[%d]", i)
		if err := numericID(f+".segment_id", au.SegmentID, maxInt64IDs); err != nil {
			return err
		}
		if err := au.Segment.normalize(f + ".segment"); err != nil {
			return err
		}
	}
	return nil
}

// Check re-validates a stored spec against the current allow-list (which
// may have shrunk since the instruction was accepted).
func (s Spec) Check(allow AllowList) error {
	for _, e := range s.endpoints() {
		if err := allow.Check(e); err != nil {
			return err
		}
	}
	return nil
}

func (s Spec) endpoints() []string {
	var out []string
	if s.Meta != nil {
		out = append(out, s.Meta.Endpoint)
	}
	if s.Google != nil {
		out = append(out, s.Google.DataManagerEndpoint, s.Google.AdsEndpoint)
		if s.Google.TokenEndpoint != "" {
			out = append(out, s.Google.TokenEndpoint)
		}
	}
	if s.LinkedIn != nil {
		out = append(out, s.LinkedIn.Endpoint)
		if s.LinkedIn.TokenEndpoint != "" {
			out = append(out, s.LinkedIn.TokenEndpoint)
		}
	}
	return out
}

// APIs a Target or Audience is sent through; also the ledger's api column.
const (
	APIMetaCAPI        = "meta_capi"
	APIMetaAudience    = "meta_custom_audience"
	APIGoogleEvents    = "google_dm_events"
	APIGoogleAds       = "google_ads_click"
	APIGoogleAudience  = "google_dm_audience"
	APILinkedInCAPI    = "linkedin_capi"
	APILinkedInSegment = "linkedin_dmp_segment"
)

// Target is one conversion mapping in a platform-neutral form.
type Target struct {
	Platform consent.Platform
	API      string
	Event    schemas.Event
	// Name is Meta's event_name.
	Name     string
	Endpoint string
	// Dest lacks Token; the forwarder adds it from the credentials.
	Dest  forward.Destination
	Value forward.Value
}

// Key identifies the destination, e.g. "meta_capi:123".
func (t Target) Key() string {
	return t.API + ":" + destKey(t.Dest)
}

// Audience is one audience in a platform-neutral form.
type Audience struct {
	Platform consent.Platform
	API      string
	Endpoint string
	Dest     forward.Destination // without Token
	Include  []schemas.Event
	Exclude  []schemas.Event
	Days     int
}

// Key identifies the audience at its platform, e.g.
// "google_dm_audience:7693729833:7090784486".
func (a Audience) Key() string {
	return a.API + ":" + destKey(a.Dest)
}

// Mentions reports whether event e is an include or exclude event of a.
func (a Audience) Mentions(e schemas.Event) bool {
	return slices.Contains(a.Include, e) || slices.Contains(a.Exclude, e)
}

func destKey(d forward.Destination) string {
	if d.Account != "" {
		return strings.ReplaceAll(d.Account, "-", "") + ":" + strings.ReplaceAll(d.ID, "-", "")
	}
	return d.ID
}

func toValue(v *Value) forward.Value {
	if v == nil {
		return forward.Value{}
	}
	return forward.Value{Amount: v.Amount, Currency: v.Currency}
}

func events(names []string) []schemas.Event {
	out := make([]schemas.Event, 0, len(names))
	for _, n := range names {
		out = append(out, eventNames[n])
	}
	return out
}

// Conversions returns the conversion mappings of platform p.
func (s Spec) Conversions(p consent.Platform) []Target {
	var out []Target
	switch p {
	case consent.Meta:
		if m := s.Meta; m != nil {
			for _, cv := range m.Conversions {
				out = append(out, Target{Platform: p, API: APIMetaCAPI, Event: eventNames[cv.Event], Name: cv.EventName,
					Endpoint: m.Endpoint, Dest: forward.Destination{ID: cv.PixelID, TestCode: m.TestEventCode}, Value: toValue(cv.Value)})
			}
		}
	case consent.Google:
		if g := s.Google; g != nil {
			for _, cv := range g.Conversions {
				t := Target{Platform: p, API: APIGoogleEvents, Event: eventNames[cv.Event], Endpoint: g.DataManagerEndpoint,
					Dest: forward.Destination{ID: cv.ConversionActionID, Account: g.CustomerID, AccountType: g.AccountType,
						LoginAccount: g.LoginCustomerID}, Value: toValue(cv.Value)}
				if cv.API == GoogleAdsClick {
					t.API, t.Endpoint = APIGoogleAds, g.AdsEndpoint
					t.Dest.AccountType = ""
				}
				out = append(out, t)
			}
		}
	case consent.LinkedIn:
		if l := s.LinkedIn; l != nil {
			for _, cv := range l.Conversions {
				out = append(out, Target{Platform: p, API: APILinkedInCAPI, Event: eventNames[cv.Event], Endpoint: l.Endpoint,
					Dest: forward.Destination{ID: cv.ConversionRuleID}, Value: toValue(cv.Value)})
			}
		}
	}
	return out
}

// Audiences returns the audiences of platform p.
func (s Spec) Audiences(p consent.Platform) []Audience {
	var out []Audience
	add := func(api, endpoint string, d forward.Destination, g Segment) {
		out = append(out, Audience{Platform: p, API: api, Endpoint: endpoint, Dest: d,
			Include: events(g.Include), Exclude: events(g.Exclude), Days: g.Days})
	}
	switch p {
	case consent.Meta:
		if m := s.Meta; m != nil {
			for _, a := range m.Audiences {
				add(APIMetaAudience, m.Endpoint, forward.Destination{ID: a.AudienceID}, a.Segment)
			}
		}
	case consent.Google:
		if g := s.Google; g != nil {
			for _, a := range g.Audiences {
				add(APIGoogleAudience, g.DataManagerEndpoint, forward.Destination{ID: a.UserListID, Account: g.CustomerID,
					AccountType: g.AccountType, LoginAccount: g.LoginCustomerID}, a.Segment)
			}
		}
	case consent.LinkedIn:
		if l := s.LinkedIn; l != nil {
			for _, a := range l.Audiences {
				add(APILinkedInSegment, l.Endpoint, forward.Destination{ID: a.SegmentID}, a.Segment)
			}
		}
	}
	return out
}

// Token returns the access token c holds for platform p.
func (c Credentials) Token(p consent.Platform) forward.Secret {
	switch p {
	case consent.Meta:
		return forward.Secret(c.MetaAccessToken)
	case consent.Google:
		return forward.Secret(c.GoogleAccessToken)
	case consent.LinkedIn:
		return forward.Secret(c.LinkedInAccessToken)
	}
	return ""
}

// TermsAccepted reports whether s records Google's Customer Match terms as
// accepted.
func (s Spec) TermsAccepted() bool { return s.Google != nil && s.Google.CustomerMatchTermsAccepted }
