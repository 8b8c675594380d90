// Package linkedintest is a strict in-process fake of the LinkedIn
// Marketing API endpoints jobpixel uses: POST /rest/conversionEvents
// (single, or BATCH_CREATE) and POST /rest/dmpSegments/{id}/users
// (BATCH_CREATE), and an OAuth 2.0 token endpoint (POST /token, see
// fakeserver.Tokens) whose access tokens expire and whose refresh tokens
// rotate.
//
// Header checks, in order: Authorization: Bearer (401
// {"status":401,"serviceErrorCode":65600,"code":"INVALID_ACCESS_TOKEN",
// "message":"Invalid access token"}); LinkedIn-Version present (400
// VERSION_MISSING), YYYYMM (400 INVALID_VERSION), not older than
// Config.MinVersion (426 NONEXISTENT_VERSION); X-Restli-Protocol-Version
// 2.0.0 (400); X-RestLi-Method BATCH_CREATE or absent (single event;
// required for segments); Content-Type application/json.
//
// Body checks answer 422 {"status":422,"message":"Index: N, ERROR ::
// /path :: problem"} ("ERROR :: /path :: problem" for a single event):
// exact-case keys, no unknown fields, JSON types (amount must be a string,
// conversionHappenedAt an integer); conversion an
// urn:lla:llaPartnerConversion URN; conversionHappenedAt in epoch
// milliseconds (a seconds value is rejected), at most 90 days old and not
// more than 10 minutes in the future; conversionValue.currencyCode 3
// letters and amount a decimal string; eventId (required by this fake: it
// is the dedup key); user with userIds and/or userInfo (firstName and
// lastName); idType one of SHA256_EMAIL (64 lowercase hex, not the hash of
// a registered address in the wrong normalisation),
// LINKEDIN_FIRST_PARTY_ADS_TRACKING_UUID (must not look hashed),
// ACXIOM_ID, ORACLE_MOAT_ID. Too many elements (Config.MaxEvents,
// Config.MaxSegmentUsers, 5,000 by default) answers 400.
//
// Segments: unknown segments answer 404; AddSegment can make a new segment
// answer 404 for its first N uploads. Elements need action ADD or REMOVE
// and userIds (SHA256_EMAIL, SHA512_EMAIL, GOOGLE_AID, APPLE_IDFA).
//
// FailEvent and FailUser make single elements of an otherwise accepted
// batch fail (200 with {"status":4xx,"error":{...}} for that element).
package linkedintest

import (
	"encoding/json"
	"errors"
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

// Defaults and limits.
const (
	DefaultMaxBatch = 5000
	MaxEventAge     = 90 * 24 * time.Hour
	MaxSkew         = 10 * time.Minute
)

// Config configures a Server.
type Config struct {
	// Token, if set, is the only accepted bearer token besides the
	// unexpired ones Tokens issued (any non-empty one otherwise; a token
	// Tokens issued is refused once it expired).
	Token string
	// TokenTTL is how long the access tokens of the token endpoint
	// (Tokens, at URL()+"/token") last; 0 means 60 days, as LinkedIn's
	// do. Its refresh tokens rotate on every refresh.
	TokenTTL time.Duration
	// MinVersion is the oldest LinkedIn-Version still served (YYYYMM);
	// older versions get 426. "" means "202501".
	MinVersion string
	// MaxEvents and MaxSegmentUsers bound batch sizes; 0 means
	// DefaultMaxBatch.
	MaxEvents, MaxSegmentUsers int
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// Fault is a scripted answer; see Inject.
type Fault = fakeserver.Fault

// UserID is a recorded user id.
type UserID struct{ IDType, IDValue string }

// Event is a recorded conversion event.
type Event struct {
	Conversion           string
	ConversionHappenedAt int64
	Currency, Amount     string
	EventID              string
	UserIDs              []UserID
	FirstName, LastName  string
	Version              string
}

// Request is one request that reached validation (faults excluded).
type Request struct {
	Method, Path string
	Status       int
	Items        int
	Batch        bool
}

type elementFailure struct {
	status  int
	message string
}

// Server is the fake. It is safe for concurrent use.
type Server struct {
	cfg              Config
	*fakeserver.Base // URL, Client, Close, Inject, InjectN, Pending, Hits
	handler          http.Handler
	// Tokens is the OAuth 2.0 token endpoint (refresh tokens) at
	// URL()+fakeserver.TokenPath; register clients on it.
	Tokens *fakeserver.Tokens

	mu        sync.Mutex
	events    []Event
	eventIDs  map[string]int
	segments  map[string]*segment
	requests  []Request
	wrongHash map[string]bool
	failEvent map[string]elementFailure
	failUser  map[string]elementFailure
}

type segment struct {
	notFoundFor int
	members     map[string]bool
}

// New returns an unstarted Server.
func New(cfg Config) *Server {
	if cfg.MinVersion == "" {
		cfg.MinVersion = "202501"
	}
	if cfg.MaxEvents == 0 {
		cfg.MaxEvents = DefaultMaxBatch
	}
	if cfg.MaxSegmentUsers == 0 {
		cfg.MaxSegmentUsers = DefaultMaxBatch
	}
	if cfg.TokenTTL == 0 {
		cfg.TokenTTL = 60 * 24 * time.Hour
	}
	s := &Server{
		cfg: cfg, Base: fakeserver.New(),
		eventIDs: map[string]int{}, segments: map[string]*segment{}, wrongHash: map[string]bool{},
		failEvent: map[string]elementFailure{}, failUser: map[string]elementFailure{},
	}
	s.Tokens = fakeserver.NewTokens(cfg.TokenTTL, s.now, true)
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

// AddSegment creates a DMP segment that answers 404 to its first
// notFoundFor uploads, as a freshly created segment does.
func (s *Server) AddSegment(id string, notFoundFor int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.segments[id] = &segment{notFoundFor: notFoundFor, members: map[string]bool{}}
}

// Segment returns the sorted user ids currently in a segment.
func (s *Server) Segment(id string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	if sg := s.segments[id]; sg != nil {
		for k := range sg.members {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// RegisterEmail tells the fake a plaintext address a test uses; hashes of
// it that are not sha256(lowercase(trim(raw))) are then rejected.
func (s *Server) RegisterEmail(raw string) {
	want := fakeserver.SHA256(strings.ToLower(strings.TrimSpace(raw)))
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range []string{raw, strings.TrimSpace(raw), strings.ToLower(raw)} {
		if h := fakeserver.SHA256(v); h != want {
			s.wrongHash[h] = true
		}
	}
}

// FailEvent makes the element with this eventId fail with status and
// message inside an otherwise accepted batch.
func (s *Server) FailEvent(eventID string, status int, message string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failEvent[eventID] = elementFailure{status, message}
}

// FailUser makes segment elements carrying this idValue fail.
func (s *Server) FailUser(idValue string, status int, message string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failUser[idValue] = elementFailure{status, message}
}

// Events returns the accepted events, duplicates included.
func (s *Server) Events() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.events)
}

// Event returns the first accepted event with this eventId.
func (s *Server) Event(eventID string) (Event, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.events {
		if e.EventID == eventID {
			return e, true
		}
	}
	return Event{}, false
}

// Duplicates returns, for each eventId accepted more than once, how many
// extra times.
func (s *Server) Duplicates() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for id, n := range s.eventIDs {
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

func (s *Server) now() time.Time {
	if s.cfg.Now != nil {
		return s.cfg.Now()
	}
	return time.Now()
}

// --- envelopes ---

type apiErr struct {
	status int
	body   map[string]any
}

func errBody(status int, code, message string) *apiErr {
	b := map[string]any{"status": status, "message": message}
	if code != "" {
		b["code"] = code
	}
	return &apiErr{status: status, body: b}
}

func (e *apiErr) write(w http.ResponseWriter) {
	fakeserver.WriteJSON(w, e.status, e.body)
}

// validation errors carry the element index (-1 for a single event).
type fieldErr struct {
	index int
	path  string
	msg   string
}

func (e fieldErr) apiErr() *apiErr {
	m := fmt.Sprintf("ERROR :: %s :: %s", e.path, e.msg)
	if e.index >= 0 {
		m = fmt.Sprintf("Index: %d, %s", e.index, m)
	}
	return errBody(422, "", m)
}

// --- routing ---

var (
	segmentPath = regexp.MustCompile(`^/rest/dmpSegments/([^/]+)/users$`)
	versionRE   = regexp.MustCompile(`^[0-9]{6}$`)
)

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == fakeserver.TokenPath {
		s.Tokens.ServeHTTP(w, r)
		return
	}
	rec := Request{Method: r.Method, Path: r.URL.Path, Batch: r.Header.Get("X-RestLi-Method") == "BATCH_CREATE"}
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
	seg := segmentPath.FindStringSubmatch(r.URL.Path)
	if r.URL.Path != "/rest/conversionEvents" && seg == nil {
		return 0, 0, errBody(404, "", "Not Found")
	}
	if r.Method != http.MethodPost {
		return 0, 0, errBody(405, "", "Method not allowed")
	}
	auth, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || !s.Tokens.Accepts(auth, s.cfg.Token) {
		return 0, 0, &apiErr{status: 401, body: map[string]any{"status": 401, "serviceErrorCode": 65600, "code": "INVALID_ACCESS_TOKEN", "message": "Invalid access token"}}
	}
	version := r.Header.Get("LinkedIn-Version")
	switch {
	case version == "":
		return 0, 0, errBody(400, "VERSION_MISSING", "A version must be present. Please specify a version by adding the LinkedIn-Version header.")
	case !versionRE.MatchString(version):
		return 0, 0, errBody(400, "INVALID_VERSION", fmt.Sprintf("Invalid version format %q: expected YYYYMM", version))
	case version < s.cfg.MinVersion:
		return 0, 0, errBody(426, "NONEXISTENT_VERSION", fmt.Sprintf("Requested version %s is not active", version))
	}
	if v := r.Header.Get("X-Restli-Protocol-Version"); v != "2.0.0" {
		return 0, 0, errBody(400, "", fmt.Sprintf("X-Restli-Protocol-Version must be 2.0.0, got %q", v))
	}
	method := r.Header.Get("X-RestLi-Method")
	if method != "" && method != "BATCH_CREATE" {
		return 0, 0, errBody(400, "", fmt.Sprintf("unsupported X-RestLi-Method %q", method))
	}
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" {
		return 0, 0, errBody(415, "", fmt.Sprintf("unsupported content type %q", ct))
	}
	body, err := fakeserver.ReadBody(r, 64<<20)
	if err != nil {
		return 0, 0, errBody(400, "", err.Error())
	}
	if seg != nil {
		if method != "BATCH_CREATE" {
			return 0, 0, errBody(400, "", "dmpSegments users require X-RestLi-Method: BATCH_CREATE")
		}
		return s.segmentUsers(w, seg[1], body)
	}
	return s.conversionEvents(w, method == "BATCH_CREATE", version, body)
}

func decodeErr(index int, err error) *apiErr {
	var de *fakeserver.DecodeError
	if !errors.As(err, &de) {
		return errBody(400, "", err.Error())
	}
	switch de.Kind {
	case "unknown field":
		return fieldErr{index, de.Slash(), "unrecognized field found but not allowed"}.apiErr()
	case "type":
		return fieldErr{index, de.Slash(), "data type mismatch: " + de.Problem}.apiErr()
	}
	return errBody(400, "", "malformed JSON: "+de.Problem)
}

// --- conversion events ---

type wireElements struct {
	Elements *[]json.RawMessage `json:"elements"`
}

type wireUserID struct {
	IDType  *string `json:"idType"`
	IDValue *string `json:"idValue"`
}

type wireEvent struct {
	Conversion           *string `json:"conversion"`
	ConversionHappenedAt *int64  `json:"conversionHappenedAt"`
	ConversionValue      *struct {
		CurrencyCode *string `json:"currencyCode"`
		Amount       *string `json:"amount"`
	} `json:"conversionValue"`
	EventID *string `json:"eventId"`
	User    *struct {
		UserIDs  []wireUserID `json:"userIds"`
		UserInfo *struct {
			FirstName   *string `json:"firstName"`
			LastName    *string `json:"lastName"`
			CompanyName *string `json:"companyName"`
			Title       *string `json:"title"`
			CountryCode *string `json:"countryCode"`
		} `json:"userInfo"`
	} `json:"user"`
}

var (
	urnRE      = regexp.MustCompile(`^urn:lla:llaPartnerConversion:[0-9]+$`)
	decimalRE  = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?$`)
	currencyRE = regexp.MustCompile(`^[A-Z]{3}$`)
	eventIDs   = map[string]bool{"SHA256_EMAIL": true, "LINKEDIN_FIRST_PARTY_ADS_TRACKING_UUID": true, "ACXIOM_ID": true, "ORACLE_MOAT_ID": true}
	segmentIDs = map[string]bool{"SHA256_EMAIL": true, "SHA512_EMAIL": true, "GOOGLE_AID": true, "APPLE_IDFA": true}
)

const required = "field is required but not found and has no default value"

func (s *Server) conversionEvents(w http.ResponseWriter, batch bool, version string, body []byte) (int, int, *apiErr) {
	var raws []json.RawMessage
	if batch {
		var req wireElements
		if err := fakeserver.Decode(body, &req); err != nil {
			return 0, 0, decodeErr(-1, err)
		}
		if req.Elements == nil || len(*req.Elements) == 0 {
			return 0, 0, fieldErr{-1, "/elements", required}.apiErr()
		}
		raws = *req.Elements
		if len(raws) > s.cfg.MaxEvents {
			return 0, len(raws), errBody(400, "", fmt.Sprintf("Batch size %d exceeds the maximum of %d", len(raws), s.cfg.MaxEvents))
		}
	} else {
		raws = []json.RawMessage{body}
	}
	now := s.now()
	events := make([]Event, len(raws))
	for i, raw := range raws {
		idx := i
		if !batch {
			idx = -1
		}
		var we wireEvent
		if err := fakeserver.Decode(raw, &we); err != nil {
			return 0, len(raws), decodeErr(idx, err)
		}
		ev, ferr := s.checkEvent(we, now)
		if ferr != nil {
			ferr.index = idx
			return 0, len(raws), ferr.apiErr()
		}
		ev.Version = version
		events[i] = ev
	}
	var statuses []any
	s.mu.Lock()
	for _, ev := range events {
		if f, bad := s.failEvent[ev.EventID]; bad {
			statuses = append(statuses, map[string]any{"status": f.status, "error": map[string]any{"status": f.status, "message": f.message}})
			continue
		}
		s.events = append(s.events, ev)
		s.eventIDs[ev.EventID]++
		statuses = append(statuses, map[string]any{"status": 201})
	}
	s.mu.Unlock()
	if !batch {
		st := statuses[0].(map[string]any)
		if st["status"] != 201 {
			e := st["error"].(map[string]any)
			return 0, 1, errBody(e["status"].(int), "", e["message"].(string))
		}
		w.WriteHeader(http.StatusCreated)
		return http.StatusCreated, 1, nil
	}
	fakeserver.WriteJSON(w, http.StatusOK, map[string]any{"elements": statuses})
	return http.StatusOK, len(raws), nil
}

func (s *Server) checkEvent(we wireEvent, now time.Time) (Event, *fieldErr) {
	fail := func(path, msg string) (Event, *fieldErr) { return Event{}, &fieldErr{path: path, msg: msg} }
	var ev Event
	if we.Conversion == nil {
		return fail("/conversion", required)
	}
	if !urnRE.MatchString(*we.Conversion) {
		return fail("/conversion", "invalid urn, expected urn:lla:llaPartnerConversion:{id}")
	}
	if we.ConversionHappenedAt == nil {
		return fail("/conversionHappenedAt", required)
	}
	ms := *we.ConversionHappenedAt
	if ms < 100_000_000_000 {
		return fail("/conversionHappenedAt", "must be epoch milliseconds, got what looks like seconds")
	}
	t := time.UnixMilli(ms)
	if now.Sub(t) > MaxEventAge {
		return fail("/conversionHappenedAt", "conversion happened more than 90 days ago")
	}
	if t.Sub(now) > MaxSkew {
		return fail("/conversionHappenedAt", "conversion happened in the future")
	}
	if cv := we.ConversionValue; cv != nil {
		if cv.CurrencyCode == nil {
			return fail("/conversionValue/currencyCode", required)
		}
		if !currencyRE.MatchString(*cv.CurrencyCode) {
			return fail("/conversionValue/currencyCode", "invalid currency code")
		}
		if cv.Amount == nil {
			return fail("/conversionValue/amount", required)
		}
		if !decimalRE.MatchString(*cv.Amount) {
			return fail("/conversionValue/amount", "amount must be a decimal string")
		}
		ev.Currency, ev.Amount = *cv.CurrencyCode, *cv.Amount
	}
	if we.EventID == nil || *we.EventID == "" {
		return fail("/eventId", required)
	}
	if we.User == nil {
		return fail("/user", required)
	}
	seen := map[string]bool{}
	for j, id := range we.User.UserIDs {
		p := fmt.Sprintf("/user/userIds/%d", j)
		if id.IDType == nil {
			return fail(p+"/idType", required)
		}
		if id.IDValue == nil || *id.IDValue == "" {
			return fail(p+"/idValue", required)
		}
		if !eventIDs[*id.IDType] {
			return fail(p+"/idType", fmt.Sprintf("unknown idType %q", *id.IDType))
		}
		if seen[*id.IDType] {
			return fail(p+"/idType", "duplicate idType")
		}
		seen[*id.IDType] = true
		if msg := s.checkID(*id.IDType, *id.IDValue); msg != "" {
			return fail(p+"/idValue", msg)
		}
		ev.UserIDs = append(ev.UserIDs, UserID{*id.IDType, *id.IDValue})
	}
	if ui := we.User.UserInfo; ui != nil {
		if ui.FirstName == nil || *ui.FirstName == "" {
			return fail("/user/userInfo/firstName", required)
		}
		if ui.LastName == nil || *ui.LastName == "" {
			return fail("/user/userInfo/lastName", required)
		}
		ev.FirstName, ev.LastName = *ui.FirstName, *ui.LastName
	}
	if len(ev.UserIDs) == 0 && we.User.UserInfo == nil {
		return fail("/user", "at least one userId or userInfo is required")
	}
	ev.Conversion, ev.ConversionHappenedAt, ev.EventID = *we.Conversion, ms, *we.EventID
	return ev, nil
}

// checkID returns a problem with a user id value, or "".
func (s *Server) checkID(typ, v string) string {
	switch typ {
	case "SHA256_EMAIL":
		if !fakeserver.IsSHA256(v) {
			return "SHA256_EMAIL must be a lowercase hex SHA-256"
		}
		s.mu.Lock()
		bad := s.wrongHash[v]
		s.mu.Unlock()
		if bad {
			return "SHA256_EMAIL is the hash of an e-mail that was not trimmed and lowercased"
		}
	case "SHA512_EMAIL":
		if len(v) != 128 || strings.Trim(v, "0123456789abcdef") != "" {
			return "SHA512_EMAIL must be a lowercase hex SHA-512"
		}
	case "LINKEDIN_FIRST_PARTY_ADS_TRACKING_UUID", "GOOGLE_AID", "APPLE_IDFA":
		if fakeserver.IsHexish(v) {
			return typ + " must be sent as received, not hashed"
		}
	}
	return ""
}

// --- DMP segments ---

type wireSegmentUser struct {
	Action  *string      `json:"action"`
	UserIDs []wireUserID `json:"userIds"`
}

func (s *Server) segmentUsers(w http.ResponseWriter, id string, body []byte) (int, int, *apiErr) {
	notFound := errBody(404, "", fmt.Sprintf("DMP segment %s not found", id))
	s.mu.Lock()
	sg := s.segments[id]
	warming := sg != nil && sg.notFoundFor > 0
	if warming {
		sg.notFoundFor--
	}
	s.mu.Unlock()
	if sg == nil || warming {
		return 0, 0, notFound
	}
	var req struct {
		Elements *[]json.RawMessage `json:"elements"`
	}
	if err := fakeserver.Decode(body, &req); err != nil {
		return 0, 0, decodeErr(-1, err)
	}
	if req.Elements == nil || len(*req.Elements) == 0 {
		return 0, 0, fieldErr{-1, "/elements", required}.apiErr()
	}
	raws := *req.Elements
	if len(raws) > s.cfg.MaxSegmentUsers {
		return 0, len(raws), errBody(400, "", fmt.Sprintf("Batch size %d exceeds the maximum of %d", len(raws), s.cfg.MaxSegmentUsers))
	}
	type user struct {
		add bool
		ids []string
	}
	users := make([]user, len(raws))
	for i, raw := range raws {
		var su wireSegmentUser
		if err := fakeserver.Decode(raw, &su); err != nil {
			return 0, len(raws), decodeErr(i, err)
		}
		if su.Action == nil {
			return 0, len(raws), fieldErr{i, "/action", required}.apiErr()
		}
		if *su.Action != "ADD" && *su.Action != "REMOVE" {
			return 0, len(raws), fieldErr{i, "/action", "action must be ADD or REMOVE"}.apiErr()
		}
		if len(su.UserIDs) == 0 {
			return 0, len(raws), fieldErr{i, "/userIds", required}.apiErr()
		}
		users[i].add = *su.Action == "ADD"
		for j, uid := range su.UserIDs {
			p := fmt.Sprintf("/userIds/%d", j)
			if uid.IDType == nil || !segmentIDs[*uid.IDType] {
				return 0, len(raws), fieldErr{i, p + "/idType", "missing or unknown idType"}.apiErr()
			}
			if uid.IDValue == nil || *uid.IDValue == "" {
				return 0, len(raws), fieldErr{i, p + "/idValue", required}.apiErr()
			}
			if msg := s.checkID(*uid.IDType, *uid.IDValue); msg != "" {
				return 0, len(raws), fieldErr{i, p + "/idValue", msg}.apiErr()
			}
			users[i].ids = append(users[i].ids, *uid.IDValue)
		}
	}
	var statuses []any
	s.mu.Lock()
	for _, u := range users {
		var failed *elementFailure
		for _, v := range u.ids {
			if f, ok := s.failUser[v]; ok {
				failed = &f
				break
			}
		}
		if failed != nil {
			statuses = append(statuses, map[string]any{"status": failed.status, "error": map[string]any{"status": failed.status, "message": failed.message}})
			continue
		}
		for _, v := range u.ids {
			if u.add {
				sg.members[v] = true
			} else {
				delete(sg.members, v)
			}
		}
		statuses = append(statuses, map[string]any{"status": 201})
	}
	s.mu.Unlock()
	fakeserver.WriteJSON(w, http.StatusOK, map[string]any{"elements": statuses})
	return http.StatusOK, len(raws), nil
}

// --- fault helpers ---

// Throttled returns a fault answering 429 with LinkedIn's throttle
// envelope and a Retry-After header in seconds when retryAfter > 0.
func Throttled(retryAfter time.Duration) Fault {
	return Fault{Status: 429, Header: fakeserver.RetryAfterHeader(retryAfter),
		Body: fakeserver.MustJSON(map[string]any{"status": 429, "serviceErrorCode": 101,
			"message": "Resource level throttle APPLICATION DAY limit for calls to this resource is reached."})}
}

// ServerError returns a fault answering 500.
func ServerError() Fault {
	return Fault{Status: 500, Body: fakeserver.MustJSON(map[string]any{"status": 500, "message": "Internal Server Error"})}
}

// Unauthorized returns a fault answering 401 INVALID_ACCESS_TOKEN.
func Unauthorized() Fault {
	return Fault{Status: 401, Body: fakeserver.MustJSON(map[string]any{"status": 401, "serviceErrorCode": 65600,
		"code": "INVALID_ACCESS_TOKEN", "message": "Invalid access token"})}
}

// Sunset returns a fault answering 426 for a sunset version.
func Sunset() Fault {
	return Fault{Status: 426, Body: fakeserver.MustJSON(map[string]any{"status": 426, "code": "NONEXISTENT_VERSION", "message": "Requested version is not active"})}
}

// Hang returns a fault that answers nothing for d (or until the client
// gives up), then handles the request normally.
func Hang(d time.Duration) Fault { return Fault{Hang: d} }
