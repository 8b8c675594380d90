// Package metatest is a strict in-process fake of the Meta Graph API
// endpoints jobpixel uses: the Conversions API
// (POST /{version}/{pixel}/events?access_token=) and Custom Audience users
// (POST and DELETE /{version}/{audience}/users?access_token=).
//
// It enforces the formats of /work/shared/docs/platforms.md and answers
// anything off-spec with Meta's error envelope (HTTP 400):
//
//	{"error":{"message":"Invalid parameter","type":"OAuthException","code":100,
//	  "error_subcode":2804003,"is_transient":false,"error_user_title":"...",
//	  "error_user_msg":"...","fbtrace_id":"AfakeTrace"}}
//
// error_subcode is present only where the reference documents one
// (2804003 event too old; 2650 subcodes 1870147 and 1870158); titles and
// messages are the fake's own. fbtrace_id is always "AfakeTrace".
//
// Conversions API checks: a version other than Config.Version → code 2635;
// missing access_token → code 104, wrong token → code 190; body JSON
// {"data":[...],"test_event_code":"..."} or form field data (a JSON array);
// exact-case keys, no unknown fields, right JSON types; 1..1,000 events;
// event_name, event_time (unix seconds: a millisecond value is "in the
// future"), event_id (required by this fake so every event has a dedup key),
// action_source (one of Meta's values), event_source_url and
// user_data.client_user_agent (for website); event_time not older than 7
// days (subcode 2804003) nor more than 10 minutes in the future; em, ph, fn,
// ln, ge, db, ct, st, zp, country must be 64 lowercase hex and not the hash
// of a registered value in the wrong normalisation (RegisterEmail,
// RegisterPhone); client_ip_address must be an IP and client_user_agent,
// fbc and fbp must not look hashed, fbc/fbp must match fb.N.{ms}.{value};
// data_processing_options must be present and be [] or ["LDU"], with
// data_processing_options_country 0|1 and _state 0|1000 exactly when LDU;
// custom_data.value must be a number with a 3-letter currency.
//
// Audience checks: session{session_id>0, batch_seq>=1, last_batch_flag,
// estimated_num_total} and payload{schema, data} required; schema a known
// key or list of keys without duplicates; 1..10,000 rows, each as wide as
// the schema, none empty; hashed columns 64 lowercase hex ("" allowed in a
// multi-key schema), EXTERN_ID and MADID unhashed; session rules: a new
// session must start at batch_seq 1 (2650/1870147), continue with seq+1
// (code 2650), not change method (code 100) and not continue after its last
// batch (2650/1870158). Re-sending the latest batch_seq of a session is
// accepted as a retry.
//
// Everything accepted is recorded (see Events, Audience, Uploads); faults
// can be scripted with Inject.
package metatest

import (
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jobpixel/jobpixel/forward/internal/fakeserver"
)

// Limits enforced by the fake.
const (
	MaxEvents   = 1000
	MaxRows     = 10000
	MaxEventAge = 7 * 24 * time.Hour
	MaxSkew     = 10 * time.Minute
	TraceID     = "AfakeTrace"
)

// Config configures a Server. The zero value accepts any non-empty token on
// version v25.0 and reads the real clock.
type Config struct {
	// Version is the only accepted API version; "" means "v25.0".
	Version string
	// Token, if set, is the only accepted access_token.
	Token string
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// Fault is a scripted answer; see Inject.
type Fault = fakeserver.Fault

// Server is the fake. It is safe for concurrent use.
type Server struct {
	cfg              Config
	*fakeserver.Base // URL, Client, Close, Inject, InjectN, Pending, Hits
	handler          http.Handler

	mu        sync.Mutex
	events    []Event
	byID      map[string]int // event_id → count accepted
	requests  []Request
	uploads   []Upload
	audiences map[string]map[string]Row // audience → member key → row
	sessions  map[sessionKey]*sessionState
	wrongHash map[string]string // hash of a wrongly normalised value → what it is
}

type sessionKey struct {
	audience string
	id       int64
}

type sessionState struct {
	method  string
	lastSeq int
	closed  bool
}

// Event is an accepted Conversions API event.
type Event struct {
	Pixel                 string
	Name                  string
	Time                  int64
	ID                    string
	ActionSource          string
	SourceURL             string
	User                  UserData
	Value                 string // custom_data.value as JSON text; "" if absent
	Currency              string
	DataProcessingOptions []string
	DPOCountry, DPOState  *int
	TestEventCode         string
}

// UserData is an accepted event's user_data (em/ph normalised to lists).
type UserData struct {
	Em, Ph          []string
	ClientIPAddress string
	ClientUserAgent string
	Fbc, Fbp        string
	ExternalID      []string
}

// Request is one request that reached validation (faults excluded).
type Request struct {
	Method string
	Path   string // without the query (the token is not recorded)
	Status int
	Items  int // events or rows in the body, when it could be decoded
}

// Upload is one accepted audience request.
type Upload struct {
	Audience       string
	Method         string // POST (add) or DELETE (remove)
	SessionID      int64
	BatchSeq       int
	Last           bool
	EstimatedTotal *int
	Schema         []string
	Rows           int
}

// Row is an audience row keyed by schema column.
type Row map[string]string

// New returns an unstarted Server; use it as an http.Handler or call
// Start.
func New(cfg Config) *Server {
	if cfg.Version == "" {
		cfg.Version = "v25.0"
	}
	s := &Server{
		cfg:       cfg,
		Base:      fakeserver.New(),
		byID:      map[string]int{},
		audiences: map[string]map[string]Row{},
		sessions:  map[sessionKey]*sessionState{},
		wrongHash: map[string]string{},
	}
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

// RegisterEmail tells the fake a plaintext address a test uses. Hashes of
// wrongly normalised forms of it (untrimmed, not lowercased) are then
// rejected with "Wrong Normalisation"; the correct form is
// sha256(lowercase(trim(raw))).
func (s *Server) RegisterEmail(raw string) {
	want := fakeserver.SHA256(strings.ToLower(strings.TrimSpace(raw)))
	s.registerWrong(want, "e-mail", raw, strings.TrimSpace(raw), strings.ToLower(raw))
}

// RegisterPhone tells the fake a plaintext phone number a test uses. The
// correct form is digits only, with country code, no '+' or "00"; hashes
// of the raw text, of "+digits" or of "00digits" are rejected.
func (s *Server) RegisterPhone(raw string) {
	digits := strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, raw)
	norm := strings.TrimPrefix(digits, "00")
	want := fakeserver.SHA256(norm)
	s.registerWrong(want, "phone", raw, strings.TrimSpace(raw), "+"+norm, "00"+norm)
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

// Events returns every accepted event in order, duplicates included.
func (s *Server) Events() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.events)
}

// Event returns the first accepted event with event_id id.
func (s *Server) Event(id string) (Event, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.events {
		if e.ID == id {
			return e, true
		}
	}
	return Event{}, false
}

// Duplicates returns, for each event_id accepted more than once, how many
// extra times it was accepted.
func (s *Server) Duplicates() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for id, n := range s.byID {
		if n > 1 {
			out[id] = n - 1
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

// Uploads returns the accepted audience requests, in order.
func (s *Server) Uploads() []Upload {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.uploads)
}

// Audience returns the sorted member keys currently in an audience: the
// EMAIL (or EMAIL_SHA256) value of each row, else PHONE, else EXTERN_ID,
// else the first non-empty column.
func (s *Server) Audience(id string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for k := range s.audiences[id] {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Member returns the row stored for a member key of an audience.
func (s *Server) Member(audience, key string) (Row, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.audiences[audience][key]
	return r, ok
}

func (s *Server) now() time.Time {
	if s.cfg.Now != nil {
		return s.cfg.Now()
	}
	return time.Now()
}

// apiErr is an error answer.
type apiErr struct {
	status    int
	typ       string
	code      int
	subcode   int
	transient bool
	message   string
	title     string
	msg       string
}

func invalid(title, format string, args ...any) *apiErr {
	return &apiErr{status: http.StatusBadRequest, typ: "OAuthException", code: 100,
		message: "Invalid parameter", title: title, msg: fmt.Sprintf(format, args...)}
}

// Envelope returns Meta's error envelope with fbtrace_id TraceID;
// subcode 0 and empty title/msg are omitted.
func Envelope(typ string, code, subcode int, transient bool, message, title, msg string) []byte {
	e := map[string]any{
		"message":      message,
		"type":         typ,
		"code":         code,
		"is_transient": transient,
		"fbtrace_id":   TraceID,
	}
	if subcode != 0 {
		e["error_subcode"] = subcode
	}
	if title != "" {
		e["error_user_title"] = title
	}
	if msg != "" {
		e["error_user_msg"] = msg
	}
	return fakeserver.MustJSON(map[string]any{"error": e})
}

func (e *apiErr) write(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.status)
	w.Write(Envelope(e.typ, e.code, e.subcode, e.transient, e.message, e.title, e.msg))
}

var pathRE = regexp.MustCompile(`^/([^/]+)/([0-9]+)/(events|users)$`)

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	rec := Request{Method: r.Method, Path: r.URL.Path}
	status, items, err := s.handle(w, r)
	if err != nil {
		status = err.status
		err.write(w)
	}
	rec.Status, rec.Items = status, items
	s.mu.Lock()
	s.requests = append(s.requests, rec)
	s.mu.Unlock()
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request) (int, int, *apiErr) {
	m := pathRE.FindStringSubmatch(r.URL.Path)
	if m == nil {
		return 0, 0, &apiErr{status: 400, typ: "GraphMethodException", code: 100, subcode: 33,
			message: "Unsupported " + strings.ToLower(r.Method) + " request. Object does not exist, cannot be loaded due to missing permissions, or does not support this operation"}
	}
	version, id, edge := m[1], m[2], m[3]
	if version != s.cfg.Version {
		return 0, 0, &apiErr{status: 400, typ: "OAuthException", code: 2635,
			message: fmt.Sprintf("(#2635) You are calling a deprecated version of the Ads API. Please update to the latest version: %s.", s.cfg.Version)}
	}
	token := r.URL.Query().Get("access_token")
	if token == "" {
		return 0, 0, &apiErr{status: 400, typ: "OAuthException", code: 104, message: "An access token is required to request this resource."}
	}
	if s.cfg.Token != "" && token != s.cfg.Token {
		return 0, 0, &apiErr{status: 400, typ: "OAuthException", code: 190, message: "Invalid OAuth access token - Cannot parse access token"}
	}
	body, err := fakeserver.ReadBody(r, 64<<20)
	if err != nil {
		return 0, 0, invalid("Invalid Body", "%v", err)
	}
	switch {
	case edge == "events" && r.Method == http.MethodPost:
		return s.handleEvents(w, r, id, body)
	case edge == "users" && (r.Method == http.MethodPost || r.Method == http.MethodDelete):
		return s.handleUsers(w, r.Method, id, body)
	}
	return 0, 0, &apiErr{status: 400, typ: "GraphMethodException", code: 100, subcode: 33,
		message: "Unsupported " + strings.ToLower(r.Method) + " request."}
}

// --- Conversions API ---

type wireEvents struct {
	Data          *[]wireEvent `json:"data"`
	TestEventCode *string      `json:"test_event_code"`
}

type wireEvent struct {
	EventName             *string                    `json:"event_name"`
	EventTime             *int64                     `json:"event_time"`
	EventID               *string                    `json:"event_id"`
	ActionSource          *string                    `json:"action_source"`
	EventSourceURL        *string                    `json:"event_source_url"`
	UserData              *wireUserData              `json:"user_data"`
	CustomData            map[string]json.RawMessage `json:"custom_data"`
	OptOut                *bool                      `json:"opt_out"`
	DataProcessingOptions *[]string                  `json:"data_processing_options"`
	DPOCountry            *int                       `json:"data_processing_options_country"`
	DPOState              *int                       `json:"data_processing_options_state"`
	ReferrerURL           *string                    `json:"referrer_url"`
}

type wireUserData struct {
	Em              json.RawMessage `json:"em"`
	Ph              json.RawMessage `json:"ph"`
	Fn              json.RawMessage `json:"fn"`
	Ln              json.RawMessage `json:"ln"`
	Ge              json.RawMessage `json:"ge"`
	Db              json.RawMessage `json:"db"`
	Ct              json.RawMessage `json:"ct"`
	St              json.RawMessage `json:"st"`
	Zp              json.RawMessage `json:"zp"`
	Country         json.RawMessage `json:"country"`
	ExternalID      json.RawMessage `json:"external_id"`
	ClientIPAddress *string         `json:"client_ip_address"`
	ClientUserAgent *string         `json:"client_user_agent"`
	Fbc             *string         `json:"fbc"`
	Fbp             *string         `json:"fbp"`
	SubscriptionID  *string         `json:"subscription_id"`
	FbLoginID       *json.Number    `json:"fb_login_id"`
	LeadID          *json.Number    `json:"lead_id"`
}

var actionSources = map[string]bool{
	"email": true, "website": true, "app": true, "phone_call": true, "chat": true,
	"physical_store": true, "system_generated": true, "business_messaging": true, "other": true,
}

var fbCookie = regexp.MustCompile(`^fb\.[0-9]\.[0-9]{10,}\.[^\s]+$`)

func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request, pixel string, body []byte) (int, int, *apiErr) {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var req wireEvents
	switch ct {
	case "application/json":
		if err := fakeserver.Decode(body, &req); err != nil {
			return 0, 0, invalid("Invalid Request Body", "%v", err)
		}
	case "application/x-www-form-urlencoded":
		form, err := url.ParseQuery(string(body))
		if err != nil {
			return 0, 0, invalid("Invalid Request Body", "malformed form body")
		}
		for k := range form {
			if k != "data" && k != "test_event_code" {
				return 0, 0, invalid("Invalid Request Body", "unknown form field %q", k)
			}
		}
		data := "null"
		if form.Has("data") {
			data = form.Get("data")
		}
		if err := fakeserver.Decode([]byte(`{"data":`+data+`}`), &req); err != nil {
			return 0, 0, invalid("Invalid Request Body", "%v", err)
		}
		if form.Has("test_event_code") {
			v := form.Get("test_event_code")
			req.TestEventCode = &v
		}
	default:
		return 0, 0, invalid("Invalid Content Type", "content type %q is not application/json or application/x-www-form-urlencoded", ct)
	}
	if req.Data == nil || len(*req.Data) == 0 {
		return 0, 0, invalid("Missing Events", "data must hold at least one event")
	}
	data := *req.Data
	if len(data) > MaxEvents {
		return 0, len(data), invalid("Too Many Events", "at most %d events per request, got %d", MaxEvents, len(data))
	}
	now := s.now()
	accepted := make([]Event, 0, len(data))
	for i, we := range data {
		ev, err := s.checkEvent(fmt.Sprintf("data[%d]", i), we, now)
		if err != nil {
			return 0, len(data), err
		}
		ev.Pixel = pixel
		if req.TestEventCode != nil {
			ev.TestEventCode = *req.TestEventCode
		}
		accepted = append(accepted, ev)
	}
	s.mu.Lock()
	for _, ev := range accepted {
		s.events = append(s.events, ev)
		s.byID[ev.ID]++
	}
	s.mu.Unlock()
	fakeserver.WriteJSON(w, http.StatusOK, map[string]any{
		"events_received": len(accepted), "messages": []string{}, "fbtrace_id": TraceID,
	})
	return http.StatusOK, len(data), nil
}

func missing(path string) *apiErr {
	return invalid("Missing Required Parameter", "%s is required", path)
}

func (s *Server) checkEvent(p string, we wireEvent, now time.Time) (Event, *apiErr) {
	var ev Event
	if we.EventName == nil || *we.EventName == "" {
		return ev, missing(p + ".event_name")
	}
	if we.EventTime == nil {
		return ev, missing(p + ".event_time")
	}
	t := time.Unix(*we.EventTime, 0)
	switch {
	case t.Sub(now) > MaxSkew:
		return ev, invalid("Event Timestamp In Future", "%s.event_time %d is in the future (it must be unix seconds)", p, *we.EventTime)
	case now.Sub(t) > MaxEventAge:
		e := invalid("Event Timestamp Too Old", "%s.event_time %d is more than 7 days in the past", p, *we.EventTime)
		e.subcode = 2804003
		return ev, e
	}
	if we.EventID == nil || *we.EventID == "" {
		return ev, missing(p + ".event_id")
	}
	if we.ActionSource == nil {
		return ev, missing(p + ".action_source")
	}
	if !actionSources[*we.ActionSource] {
		return ev, invalid("Invalid Action Source", "%s.action_source %q is not a valid action source", p, *we.ActionSource)
	}
	if we.UserData == nil {
		return ev, missing(p + ".user_data")
	}
	ud := we.UserData
	website := *we.ActionSource == "website"
	if website {
		if we.EventSourceURL == nil || *we.EventSourceURL == "" {
			return ev, missing(p + ".event_source_url")
		}
		if ud.ClientUserAgent == nil || *ud.ClientUserAgent == "" {
			return ev, missing(p + ".user_data.client_user_agent")
		}
	}
	if we.EventSourceURL != nil {
		u, err := url.Parse(*we.EventSourceURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return ev, invalid("Invalid Event Source URL", "%s.event_source_url is not an absolute http(s) URL", p)
		}
		ev.SourceURL = *we.EventSourceURL
	}
	hashed := []struct {
		name string
		raw  json.RawMessage
		dst  *[]string
	}{
		{"em", ud.Em, &ev.User.Em}, {"ph", ud.Ph, &ev.User.Ph},
		{"fn", ud.Fn, nil}, {"ln", ud.Ln, nil}, {"ge", ud.Ge, nil}, {"db", ud.Db, nil},
		{"ct", ud.Ct, nil}, {"st", ud.St, nil}, {"zp", ud.Zp, nil}, {"country", ud.Country, nil},
	}
	for _, h := range hashed {
		vals, err := stringList(h.raw)
		fp := p + ".user_data." + h.name
		if err != nil {
			return ev, invalid("Invalid Parameter Type", "%s must be a string or an array of strings", fp)
		}
		for j, v := range vals {
			vp := fmt.Sprintf("%s[%d]", fp, j)
			if !fakeserver.IsSHA256(v) {
				return ev, invalid("Unhashed Identifier", "%s must be a lowercase hex SHA-256", vp)
			}
			if e := s.checkNormalised(vp, v); e != nil {
				return ev, e
			}
		}
		if h.dst != nil {
			*h.dst = vals
		}
	}
	ext, err := stringList(ud.ExternalID)
	if err != nil {
		return ev, invalid("Invalid Parameter Type", "%s.user_data.external_id must be a string or an array of strings", p)
	}
	ev.User.ExternalID = ext
	if ud.ClientIPAddress != nil {
		v := *ud.ClientIPAddress
		if fakeserver.IsHexish(v) {
			return ev, invalid("Value Must Not Be Hashed", "%s.user_data.client_ip_address must not be hashed", p)
		}
		if _, err := netip.ParseAddr(v); err != nil {
			return ev, invalid("Invalid IP Address", "%s.user_data.client_ip_address is not an IP address", p)
		}
		ev.User.ClientIPAddress = v
	}
	if ud.ClientUserAgent != nil {
		if fakeserver.IsHexish(*ud.ClientUserAgent) {
			return ev, invalid("Value Must Not Be Hashed", "%s.user_data.client_user_agent must not be hashed", p)
		}
		ev.User.ClientUserAgent = *ud.ClientUserAgent
	}
	for _, c := range []struct {
		name string
		v    *string
		dst  *string
	}{{"fbc", ud.Fbc, &ev.User.Fbc}, {"fbp", ud.Fbp, &ev.User.Fbp}} {
		if c.v == nil {
			continue
		}
		if fakeserver.IsHexish(*c.v) {
			return ev, invalid("Value Must Not Be Hashed", "%s.user_data.%s must not be hashed", p, c.name)
		}
		if !fbCookie.MatchString(*c.v) {
			return ev, invalid("Invalid Cookie Format", "%s.user_data.%s must look like fb.1.{ms}.{value}", p, c.name)
		}
		*c.dst = *c.v
	}
	if we.DataProcessingOptions == nil {
		return ev, missing(p + ".data_processing_options")
	}
	dpo := *we.DataProcessingOptions
	switch {
	case len(dpo) == 0:
		if we.DPOCountry != nil || we.DPOState != nil {
			return ev, invalid("Invalid Data Processing Options", "%s: data_processing_options_country/_state are only allowed with [\"LDU\"]", p)
		}
	case len(dpo) == 1 && dpo[0] == "LDU":
		if we.DPOCountry == nil || we.DPOState == nil {
			return ev, invalid("Invalid Data Processing Options", "%s: [\"LDU\"] needs data_processing_options_country and _state", p)
		}
		if (*we.DPOCountry != 0 && *we.DPOCountry != 1) || (*we.DPOState != 0 && *we.DPOState != 1000) {
			return ev, invalid("Invalid Data Processing Options", "%s: country must be 0 or 1 and state 0 or 1000", p)
		}
	default:
		return ev, invalid("Invalid Data Processing Options", "%s.data_processing_options must be [] or [\"LDU\"]", p)
	}
	ev.DataProcessingOptions = dpo
	ev.DPOCountry, ev.DPOState = we.DPOCountry, we.DPOState
	if we.CustomData != nil {
		if v, ok := we.CustomData["value"]; ok {
			var n json.Number
			if err := json.Unmarshal(v, &n); err != nil {
				return ev, invalid("Invalid Parameter Type", "%s.custom_data.value must be a number", p)
			}
			ev.Value = n.String()
			cur, ok := we.CustomData["currency"]
			var cs string
			if !ok || json.Unmarshal(cur, &cs) != nil || len(cs) != 3 {
				return ev, invalid("Invalid Currency", "%s.custom_data.currency must be a 3-letter code when value is set", p)
			}
			ev.Currency = cs
		}
	}
	ev.Name, ev.Time, ev.ID, ev.ActionSource = *we.EventName, *we.EventTime, *we.EventID, *we.ActionSource
	return ev, nil
}

func (s *Server) checkNormalised(path, hash string) *apiErr {
	s.mu.Lock()
	what, bad := s.wrongHash[hash]
	s.mu.Unlock()
	if bad {
		return invalid("Wrong Normalisation", "%s is the hash of a %s that was not normalised", path, what)
	}
	return nil
}

// stringList accepts a JSON string or array of strings; absent is nil.
func stringList(raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, err
	}
	return many, nil
}

// --- Custom Audiences ---

type wireUsers struct {
	Session *wireSession `json:"session"`
	Payload *wirePayload `json:"payload"`
}

type wireSession struct {
	SessionID         *int64 `json:"session_id"`
	BatchSeq          *int   `json:"batch_seq"`
	LastBatchFlag     *bool  `json:"last_batch_flag"`
	EstimatedNumTotal *int   `json:"estimated_num_total"`
}

type wirePayload struct {
	Schema json.RawMessage `json:"schema"`
	Data   json.RawMessage `json:"data"`
}

// schemaKeys lists accepted keys; true means the value must be hashed.
var schemaKeys = map[string]bool{
	"EMAIL": true, "EMAIL_SHA256": true, "PHONE": true, "PHONE_SHA256": true,
	"FN": true, "LN": true, "FI": true, "GEN": true, "DOBY": true, "DOBM": true, "DOBD": true,
	"CT": true, "ST": true, "ZIP": true, "COUNTRY": true,
	"EXTERN_ID": false, "MADID": false,
}

func (s *Server) handleUsers(w http.ResponseWriter, method, audience string, body []byte) (int, int, *apiErr) {
	var req wireUsers
	if err := fakeserver.Decode(body, &req); err != nil {
		return 0, 0, invalid("Invalid Request Body", "%v", err)
	}
	if req.Session == nil {
		return 0, 0, missing("session")
	}
	if req.Payload == nil {
		return 0, 0, missing("payload")
	}
	ss := req.Session
	switch {
	case ss.SessionID == nil:
		return 0, 0, missing("session.session_id")
	case *ss.SessionID <= 0:
		return 0, 0, invalid("Invalid Session", "session.session_id must be a positive 64-bit integer")
	case ss.BatchSeq == nil:
		return 0, 0, missing("session.batch_seq")
	case *ss.BatchSeq < 1:
		return 0, 0, invalid("Invalid Session", "session.batch_seq starts at 1")
	case ss.LastBatchFlag == nil:
		return 0, 0, missing("session.last_batch_flag")
	case ss.EstimatedNumTotal != nil && *ss.EstimatedNumTotal < 0:
		return 0, 0, invalid("Invalid Session", "session.estimated_num_total must not be negative")
	}
	schema, multi, err := parseSchema(req.Payload.Schema)
	if err != nil {
		return 0, 0, err
	}
	var rows [][]string
	if multi {
		if uerr := json.Unmarshal(req.Payload.Data, &rows); uerr != nil {
			return 0, 0, invalid("Invalid Payload", "payload.data must be an array of rows (arrays of strings) for a list schema")
		}
	} else {
		var flat []string
		if uerr := json.Unmarshal(req.Payload.Data, &flat); uerr != nil {
			return 0, 0, invalid("Invalid Payload", "payload.data must be an array of strings for a single-key schema")
		}
		for _, v := range flat {
			rows = append(rows, []string{v})
		}
	}
	if len(rows) == 0 {
		return 0, 0, missing("payload.data")
	}
	if len(rows) > MaxRows {
		return 0, len(rows), invalid("Too Many Rows", "at most %d rows per request, got %d", MaxRows, len(rows))
	}
	for i, row := range rows {
		if len(row) != len(schema) {
			return 0, len(rows), invalid("Invalid Payload", "payload.data[%d] has %d values for %d schema keys", i, len(row), len(schema))
		}
		empty := true
		for j, v := range row {
			if v == "" {
				if !multi {
					return 0, len(rows), invalid("Invalid Payload", "payload.data[%d] is empty", i)
				}
				continue
			}
			empty = false
			vp := fmt.Sprintf("payload.data[%d][%d] (%s)", i, j, schema[j])
			if schemaKeys[schema[j]] {
				if !fakeserver.IsSHA256(v) {
					return 0, len(rows), invalid("Unhashed Identifier", "%s must be a lowercase hex SHA-256", vp)
				}
				if e := s.checkNormalised(vp, v); e != nil {
					return 0, len(rows), e
				}
			} else if fakeserver.IsHexish(v) && schema[j] == "MADID" {
				return 0, len(rows), invalid("Value Must Not Be Hashed", "%s must not be hashed", vp)
			}
		}
		if empty {
			return 0, len(rows), invalid("Invalid Payload", "payload.data[%d] has no value", i)
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	key := sessionKey{audience, *ss.SessionID}
	st := s.sessions[key]
	seq := *ss.BatchSeq
	switch {
	case st == nil && seq != 1:
		return 0, len(rows), &apiErr{status: 400, typ: "OAuthException", code: 2650, subcode: 1870147,
			message: "Invalid parameter", title: "First Batch Sequence Not 1", msg: fmt.Sprintf("a new session must start with batch_seq 1, got %d", seq)}
	case st != nil && st.method != method:
		return 0, len(rows), invalid("Invalid Session", "session %d was started with %s", *ss.SessionID, st.method)
	case st != nil && seq == st.lastSeq:
		// A retry of the latest batch: accept again.
	case st != nil && st.closed:
		return 0, len(rows), &apiErr{status: 400, typ: "OAuthException", code: 2650, subcode: 1870158,
			message: "Invalid parameter", title: "Session Timed Out", msg: fmt.Sprintf("session %d already received its last batch", *ss.SessionID)}
	case st != nil && seq != st.lastSeq+1:
		return 0, len(rows), &apiErr{status: 400, typ: "OAuthException", code: 2650,
			message: "Invalid parameter", title: "Batch Sequence Out Of Order", msg: fmt.Sprintf("expected batch_seq %d, got %d", st.lastSeq+1, seq)}
	}
	if st == nil {
		st = &sessionState{method: method}
		s.sessions[key] = st
	}
	st.lastSeq = seq
	st.closed = st.closed || *ss.LastBatchFlag

	members := s.audiences[audience]
	if members == nil {
		members = map[string]Row{}
		s.audiences[audience] = members
	}
	for _, row := range rows {
		rr := Row{}
		for j, v := range row {
			if v != "" {
				rr[schema[j]] = v
			}
		}
		k := memberKey(schema, row)
		if method == http.MethodDelete {
			delete(members, k)
		} else {
			members[k] = rr
		}
	}
	s.uploads = append(s.uploads, Upload{
		Audience: audience, Method: method, SessionID: *ss.SessionID, BatchSeq: seq,
		Last: *ss.LastBatchFlag, EstimatedTotal: ss.EstimatedNumTotal, Schema: schema, Rows: len(rows),
	})
	fakeserver.WriteJSON(w, http.StatusOK, map[string]any{
		"audience_id":           audience,
		"session_id":            strconv.FormatInt(*ss.SessionID, 10),
		"num_received":          len(rows),
		"num_invalid_entries":   0,
		"invalid_entry_samples": map[string]string{},
	})
	return http.StatusOK, len(rows), nil
}

func parseSchema(raw json.RawMessage) (schema []string, multi bool, _ *apiErr) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, false, missing("payload.schema")
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		schema = []string{one}
	} else if json.Unmarshal(raw, &schema) == nil {
		multi = true
	} else {
		return nil, false, invalid("Invalid Schema", "payload.schema must be a string or an array of strings")
	}
	if len(schema) == 0 {
		return nil, false, missing("payload.schema")
	}
	seen := map[string]bool{}
	for _, k := range schema {
		if _, ok := schemaKeys[k]; !ok {
			return nil, false, invalid("Invalid Schema", "unknown schema key %q", k)
		}
		if seen[k] {
			return nil, false, invalid("Invalid Schema", "duplicate schema key %q", k)
		}
		seen[k] = true
	}
	return schema, multi, nil
}

func memberKey(schema, row []string) string {
	for _, pref := range []string{"EMAIL", "EMAIL_SHA256", "PHONE", "PHONE_SHA256", "EXTERN_ID"} {
		if j := slices.Index(schema, pref); j >= 0 && row[j] != "" {
			return row[j]
		}
	}
	for _, v := range row {
		if v != "" {
			return v
		}
	}
	return ""
}

// --- fault helpers ---

// Throttled returns a fault answering HTTP 429 with code 17 ("User request
// limit reached") and, if retryAfter > 0, a Retry-After header in seconds.
func Throttled(retryAfter time.Duration) Fault {
	return Fault{Status: http.StatusTooManyRequests, Header: fakeserver.RetryAfterHeader(retryAfter),
		Body: Envelope("OAuthException", 17, 0, false, "(#17) User request limit reached", "", "")}
}

// Transient returns a fault answering HTTP 500 with code 2 and
// is_transient true.
func Transient() Fault {
	return Fault{Status: http.StatusInternalServerError,
		Body: Envelope("OAuthException", 2, 0, true, "An unexpected error has occurred. Please retry your request later.", "", "")}
}

// ServerError returns a fault answering HTTP 502 with a non-JSON body.
func ServerError() Fault {
	return Fault{Status: http.StatusBadGateway, Header: http.Header{"Content-Type": {"text/html"}},
		Body: []byte("<html><body>502 Bad Gateway</body></html>")}
}

// Permanent returns a fault answering HTTP 400 with the given code and
// subcode (0 = none), is_transient false.
func Permanent(code, subcode int, message string) Fault {
	return Fault{Status: http.StatusBadRequest, Body: Envelope("OAuthException", code, subcode, false, message, "", "")}
}

// Hang returns a fault that answers nothing for d (or until the client
// gives up), then handles the request normally.
func Hang(d time.Duration) Fault { return Fault{Hang: d} }
