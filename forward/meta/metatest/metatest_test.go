package metatest_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jobpixel/jobpixel/forward/meta/metatest"
)

const (
	token    = "tok"
	maryHash = "f1904cf1a9d73a55fa5de0ac823c4403ded71afd4c3248d00bdcd0866552bb79"
)

var now = time.Date(2026, 10, 14, 16, 45, 18, 0, time.UTC)

func newServer() *metatest.Server {
	s := metatest.New(metatest.Config{Token: token, Now: func() time.Time { return now }})
	s.RegisterEmail("Mary@Example.com")
	s.RegisterPhone("+1 555 987 6543")
	return s
}

func validEvent() map[string]any {
	return map[string]any{
		"event_name":       "SubmitApplication",
		"event_time":       now.Add(-time.Hour).Unix(),
		"event_id":         "apply-1",
		"action_source":    "website",
		"event_source_url": "https://jobs.example.com/apply/42",
		"user_data": map[string]any{
			"em":                []string{maryHash},
			"client_ip_address": "203.0.113.7",
			"client_user_agent": "Mozilla/5.0",
			"fbc":               "fb.1.1697241600000.IwAR2xYz",
			"fbp":               "fb.1.1697241600000.1098115397",
		},
		"data_processing_options": []string{},
	}
}

func do(s *metatest.Server, method, target, contentType, body string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	w := httptest.NewRecorder()
	s.ServeHTTP(w, r)
	return w
}

func eventsBody(evs ...map[string]any) string {
	b, _ := json.Marshal(map[string]any{"data": evs})
	return string(b)
}

// envelope builds the exact error body the fake must send.
func envelope(typ string, code, subcode int, message, title, msg string) string {
	e := map[string]any{"message": message, "type": typ, "code": code, "is_transient": false, "fbtrace_id": "AfakeTrace"}
	if subcode != 0 {
		e["error_subcode"] = subcode
	}
	if title != "" {
		e["error_user_title"] = title
	}
	if msg != "" {
		e["error_user_msg"] = msg
	}
	b, _ := json.Marshal(map[string]any{"error": e})
	return string(b)
}

func invalid(title, msg string) string {
	return envelope("OAuthException", 100, 0, "Invalid parameter", title, msg)
}

func sameJSON(t *testing.T, got, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("response is not JSON: %q", got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad expectation %q", want)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("body\n got %s\nwant %s", got, want)
	}
}

const eventsURL = "/v25.0/1234/events?access_token=" + token

func TestEventsAccepted(t *testing.T) {
	s := newServer()
	ldu := validEvent()
	ldu["event_id"] = "apply-2"
	ldu["data_processing_options"] = []string{"LDU"}
	ldu["data_processing_options_country"] = 0
	ldu["data_processing_options_state"] = 0
	ldu["custom_data"] = map[string]any{"value": 1500.5, "currency": "EUR", "content_name": "Nurse"}
	w := do(s, "POST", eventsURL, "application/json", eventsBody(validEvent(), ldu))
	if w.Code != 200 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	sameJSON(t, w.Body.String(), `{"events_received":2,"messages":[],"fbtrace_id":"AfakeTrace"}`)
	ev, ok := s.Event("apply-2")
	if !ok || ev.Value != "1500.5" || ev.Currency != "EUR" || ev.Pixel != "1234" {
		t.Errorf("%+v", ev)
	}
	// The same event again counts as a duplicate.
	do(s, "POST", eventsURL, "application/json", eventsBody(validEvent()))
	if d := s.Duplicates(); d["apply-1"] != 1 || len(d) != 1 {
		t.Errorf("duplicates %v", d)
	}
	// Form encoding with a data field holding a JSON array.
	form := url.Values{"data": {eventsBody(validEvent())[8 : len(eventsBody(validEvent()))-1]}, "test_event_code": {"TEST1"}}
	w = do(s, "POST", eventsURL, "application/x-www-form-urlencoded", form.Encode())
	if w.Code != 200 {
		t.Fatalf("form: %d %s", w.Code, w.Body)
	}
	if evs := s.Events(); evs[len(evs)-1].TestEventCode != "TEST1" {
		t.Errorf("test_event_code not recorded")
	}
}

func TestEventsRejected(t *testing.T) {
	mutate := func(f func(ev map[string]any)) string {
		ev := validEvent()
		f(ev)
		return eventsBody(ev)
	}
	ud := func(ev map[string]any) map[string]any { return ev["user_data"].(map[string]any) }
	many := make([]map[string]any, 1001)
	for i := range many {
		many[i] = validEvent()
	}
	tests := []struct {
		name, target, ctype, body, want string
	}{
		{"wrong version", "/v19.0/1234/events?access_token=tok", "application/json", eventsBody(validEvent()),
			envelope("OAuthException", 2635, 0, "(#2635) You are calling a deprecated version of the Ads API. Please update to the latest version: v25.0.", "", "")},
		{"missing token", "/v25.0/1234/events", "application/json", eventsBody(validEvent()),
			envelope("OAuthException", 104, 0, "An access token is required to request this resource.", "", "")},
		{"wrong token", "/v25.0/1234/events?access_token=nope", "application/json", eventsBody(validEvent()),
			envelope("OAuthException", 190, 0, "Invalid OAuth access token - Cannot parse access token", "", "")},
		{"unknown path", "/v25.0/1234/conversions?access_token=tok", "application/json", "{}",
			envelope("GraphMethodException", 100, 33, "Unsupported post request. Object does not exist, cannot be loaded due to missing permissions, or does not support this operation", "", "")},
		{"content type", eventsURL, "text/plain", eventsBody(validEvent()),
			invalid("Invalid Content Type", `content type "text/plain" is not application/json or application/x-www-form-urlencoded`)},
		{"unknown top-level field", eventsURL, "application/json", `{"data":[],"partner_agent":"x"}`,
			invalid("Invalid Request Body", `unknown field "partner_agent"`)},
		{"field name case", eventsURL, "application/json", mutate(func(ev map[string]any) { ev["Event_Name"] = ev["event_name"] }),
			invalid("Invalid Request Body", `unknown field "data[0].Event_Name"`)},
		{"unknown user_data field", eventsURL, "application/json", mutate(func(ev map[string]any) { ud(ev)["email"] = maryHash }),
			invalid("Invalid Request Body", `unknown field "data[0].user_data.email"`)},
		{"empty data", eventsURL, "application/json", `{"data":[]}`, invalid("Missing Events", "data must hold at least one event")},
		{"1001 events", eventsURL, "application/json", eventsBody(many...), invalid("Too Many Events", "at most 1000 events per request, got 1001")},
		{"missing event_name", eventsURL, "application/json", mutate(func(ev map[string]any) { delete(ev, "event_name") }),
			invalid("Missing Required Parameter", "data[0].event_name is required")},
		{"event_time as string", eventsURL, "application/json", mutate(func(ev map[string]any) { ev["event_time"] = "1697241600" }),
			invalid("Invalid Request Body", "field data.event_time: wrong type: JSON string where int64 is required")},
		{"event_time in ms", eventsURL, "application/json", mutate(func(ev map[string]any) { ev["event_time"] = now.UnixMilli() }),
			invalid("Event Timestamp In Future", fmt.Sprintf("data[0].event_time %d is in the future (it must be unix seconds)", now.UnixMilli()))},
		{"event_time 8 days old", eventsURL, "application/json", mutate(func(ev map[string]any) { ev["event_time"] = now.Add(-8 * 24 * time.Hour).Unix() }),
			envelope("OAuthException", 100, 2804003, "Invalid parameter", "Event Timestamp Too Old", fmt.Sprintf("data[0].event_time %d is more than 7 days in the past", now.Add(-8*24*time.Hour).Unix()))},
		{"missing event_id", eventsURL, "application/json", mutate(func(ev map[string]any) { delete(ev, "event_id") }),
			invalid("Missing Required Parameter", "data[0].event_id is required")},
		{"bad action_source", eventsURL, "application/json", mutate(func(ev map[string]any) { ev["action_source"] = "web" }),
			invalid("Invalid Action Source", `data[0].action_source "web" is not a valid action source`)},
		{"missing event_source_url", eventsURL, "application/json", mutate(func(ev map[string]any) { delete(ev, "event_source_url") }),
			invalid("Missing Required Parameter", "data[0].event_source_url is required")},
		{"missing client_user_agent", eventsURL, "application/json", mutate(func(ev map[string]any) { delete(ud(ev), "client_user_agent") }),
			invalid("Missing Required Parameter", "data[0].user_data.client_user_agent is required")},
		{"unhashed em", eventsURL, "application/json", mutate(func(ev map[string]any) { ud(ev)["em"] = "mary@example.com" }),
			invalid("Unhashed Identifier", "data[0].user_data.em[0] must be a lowercase hex SHA-256")},
		{"uppercase hex em", eventsURL, "application/json", mutate(func(ev map[string]any) { ud(ev)["em"] = strings.ToUpper(maryHash) }),
			invalid("Unhashed Identifier", "data[0].user_data.em[0] must be a lowercase hex SHA-256")},
		{"em not normalised", eventsURL, "application/json", mutate(func(ev map[string]any) { ud(ev)["em"] = []string{sha("Mary@Example.com")} }),
			invalid("Wrong Normalisation", "data[0].user_data.em[0] is the hash of a e-mail that was not normalised")},
		{"ph with plus", eventsURL, "application/json", mutate(func(ev map[string]any) { ud(ev)["ph"] = sha("+15559876543") }),
			invalid("Wrong Normalisation", "data[0].user_data.ph[0] is the hash of a phone that was not normalised")},
		{"hashed ip", eventsURL, "application/json", mutate(func(ev map[string]any) { ud(ev)["client_ip_address"] = sha("203.0.113.7") }),
			invalid("Value Must Not Be Hashed", "data[0].user_data.client_ip_address must not be hashed")},
		{"bad ip", eventsURL, "application/json", mutate(func(ev map[string]any) { ud(ev)["client_ip_address"] = "203.0.113" }),
			invalid("Invalid IP Address", "data[0].user_data.client_ip_address is not an IP address")},
		{"hashed fbc", eventsURL, "application/json", mutate(func(ev map[string]any) { ud(ev)["fbc"] = sha("fb.1.1697241600000.IwAR2xYz") }),
			invalid("Value Must Not Be Hashed", "data[0].user_data.fbc must not be hashed")},
		{"malformed fbp", eventsURL, "application/json", mutate(func(ev map[string]any) { ud(ev)["fbp"] = "1098115397" }),
			invalid("Invalid Cookie Format", "data[0].user_data.fbp must look like fb.1.{ms}.{value}")},
		{"hashed user agent", eventsURL, "application/json", mutate(func(ev map[string]any) { ud(ev)["client_user_agent"] = sha("Mozilla/5.0") }),
			invalid("Value Must Not Be Hashed", "data[0].user_data.client_user_agent must not be hashed")},
		{"missing dpo", eventsURL, "application/json", mutate(func(ev map[string]any) { delete(ev, "data_processing_options") }),
			invalid("Missing Required Parameter", "data[0].data_processing_options is required")},
		{"LDU without country", eventsURL, "application/json", mutate(func(ev map[string]any) { ev["data_processing_options"] = []string{"LDU"} }),
			invalid("Invalid Data Processing Options", `data[0]: ["LDU"] needs data_processing_options_country and _state`)},
		{"unknown dpo", eventsURL, "application/json", mutate(func(ev map[string]any) { ev["data_processing_options"] = []string{"GDPR"} }),
			invalid("Invalid Data Processing Options", `data[0].data_processing_options must be [] or ["LDU"]`)},
		{"value as string", eventsURL, "application/json", mutate(func(ev map[string]any) {
			ev["custom_data"] = map[string]any{"value": "abc", "currency": "EUR"}
		}), invalid("Invalid Parameter Type", "data[0].custom_data.value must be a number")},
		{"form unknown field", eventsURL, "application/x-www-form-urlencoded", "data=%5B%5D&foo=1",
			invalid("Invalid Request Body", `unknown form field "foo"`)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer()
			w := do(s, "POST", tc.target, tc.ctype, tc.body)
			if w.Code != 400 {
				t.Errorf("status %d", w.Code)
			}
			sameJSON(t, w.Body.String(), tc.want)
			if len(s.Events()) != 0 {
				t.Error("a rejected request recorded events")
			}
		})
	}
}

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func readAll(resp *http.Response) string {
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestFaults(t *testing.T) {
	s := metatest.Start(metatest.Config{Token: token, Now: func() time.Time { return now }})
	defer s.Close()
	s.Inject(metatest.Throttled(3*time.Second), metatest.Transient(), metatest.ServerError(),
		metatest.Permanent(2650, 1870158, "Session timed out"))
	post := func() *http.Response {
		resp, err := s.Client().Post(s.URL()+eventsURL, "application/json", strings.NewReader(eventsBody(validEvent())))
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	check := func(resp *http.Response, status int, retryAfter string, body string) {
		t.Helper()
		defer resp.Body.Close()
		got := readAll(resp)
		if resp.StatusCode != status || resp.Header.Get("Retry-After") != retryAfter {
			t.Errorf("status %d retry-after %q", resp.StatusCode, resp.Header.Get("Retry-After"))
		}
		if body != "" {
			sameJSON(t, got, body)
		}
	}
	check(post(), 429, "3", envelope("OAuthException", 17, 0, "(#17) User request limit reached", "", ""))
	check(post(), 500, "", `{"error":{"message":"An unexpected error has occurred. Please retry your request later.","type":"OAuthException","code":2,"is_transient":true,"fbtrace_id":"AfakeTrace"}}`)
	check(post(), 502, "", "")
	check(post(), 400, "", envelope("OAuthException", 2650, 1870158, "Session timed out", "", ""))
	check(post(), 200, "", `{"events_received":1,"messages":[],"fbtrace_id":"AfakeTrace"}`)
	if s.Hits() != 5 || len(s.Events()) != 1 || s.Pending() != 0 {
		t.Errorf("hits %d events %d", s.Hits(), len(s.Events()))
	}
}

func TestHangReleasedByClientTimeout(t *testing.T) {
	s := metatest.Start(metatest.Config{Token: token, Now: func() time.Time { return now }})
	defer s.Close()
	s.Inject(metatest.Hang(time.Minute))
	c := s.Client()
	c.Timeout = 50 * time.Millisecond
	start := time.Now()
	_, err := c.Post(s.URL()+eventsURL, "application/json", strings.NewReader(eventsBody(validEvent())))
	if err == nil || time.Since(start) > 10*time.Second {
		t.Fatalf("err %v after %v", err, time.Since(start))
	}
	if len(s.Events()) != 0 {
		t.Error("a hung request was recorded")
	}
}

const usersURL = "/v25.0/2385/users?access_token=" + token

func usersBody(sessionID int64, seq int, last bool, rows ...[]string) string {
	b, _ := json.Marshal(map[string]any{
		"session": map[string]any{"session_id": sessionID, "batch_seq": seq, "last_batch_flag": last, "estimated_num_total": len(rows)},
		"payload": map[string]any{"schema": []string{"EMAIL", "PHONE"}, "data": rows},
	})
	return string(b)
}

func TestUsersAccepted(t *testing.T) {
	s := newServer()
	w := do(s, "POST", usersURL, "application/json", usersBody(9778993, 1, true, []string{maryHash, ""}, []string{"", sha("15559876543")}))
	if w.Code != 200 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	sameJSON(t, w.Body.String(), `{"audience_id":"2385","session_id":"9778993","num_received":2,"num_invalid_entries":0,"invalid_entry_samples":{}}`)
	// Single-key schema with a flat list; EXTERN_ID is accepted unhashed.
	w = do(s, "POST", usersURL, "application/json",
		`{"session":{"session_id":5,"batch_seq":1,"last_batch_flag":true},"payload":{"schema":"EXTERN_ID","data":["crm-1","crm-2"]}}`)
	if w.Code != 200 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	if got := s.Audience("2385"); len(got) != 4 {
		t.Errorf("audience %v", got)
	}
	w = do(s, "DELETE", usersURL, "application/json", usersBody(6, 1, true, []string{maryHash, ""}))
	if w.Code != 200 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	if got := s.Audience("2385"); len(got) != 3 {
		t.Errorf("after delete: %v", got)
	}
}

func TestUsersRejected(t *testing.T) {
	rows := make([][]string, 10001)
	for i := range rows {
		rows[i] = []string{maryHash, ""}
	}
	tests := []struct{ name, body, want string }{
		{"missing session", `{"payload":{"schema":"EMAIL_SHA256","data":["` + maryHash + `"]}}`,
			invalid("Missing Required Parameter", "session is required")},
		{"session_id zero", `{"session":{"session_id":0,"batch_seq":1,"last_batch_flag":true},"payload":{"schema":"EMAIL_SHA256","data":["` + maryHash + `"]}}`,
			invalid("Invalid Session", "session.session_id must be a positive 64-bit integer")},
		{"session_id string", `{"session":{"session_id":"7","batch_seq":1,"last_batch_flag":true},"payload":{"schema":"EMAIL_SHA256","data":["` + maryHash + `"]}}`,
			invalid("Invalid Request Body", "field session.session_id: wrong type: JSON string where int64 is required")},
		{"missing last_batch_flag", `{"session":{"session_id":7,"batch_seq":1},"payload":{"schema":"EMAIL_SHA256","data":["` + maryHash + `"]}}`,
			invalid("Missing Required Parameter", "session.last_batch_flag is required")},
		{"batch_seq zero", `{"session":{"session_id":7,"batch_seq":0,"last_batch_flag":true},"payload":{"schema":"EMAIL_SHA256","data":["` + maryHash + `"]}}`,
			invalid("Invalid Session", "session.batch_seq starts at 1")},
		{"unknown payload field", `{"session":{"session_id":7,"batch_seq":1,"last_batch_flag":true},"payload":{"schema":"EMAIL_SHA256","data":["` + maryHash + `"],"is_raw":true}}`,
			invalid("Invalid Request Body", `unknown field "payload.is_raw"`)},
		{"unknown schema key", `{"session":{"session_id":7,"batch_seq":1,"last_batch_flag":true},"payload":{"schema":["MAIL"],"data":[["` + maryHash + `"]]}}`,
			invalid("Invalid Schema", `unknown schema key "MAIL"`)},
		{"duplicate schema key", `{"session":{"session_id":7,"batch_seq":1,"last_batch_flag":true},"payload":{"schema":["EMAIL","EMAIL"],"data":[["` + maryHash + `","` + maryHash + `"]]}}`,
			invalid("Invalid Schema", `duplicate schema key "EMAIL"`)},
		{"flat data for list schema", `{"session":{"session_id":7,"batch_seq":1,"last_batch_flag":true},"payload":{"schema":["EMAIL"],"data":["` + maryHash + `"]}}`,
			invalid("Invalid Payload", "payload.data must be an array of rows (arrays of strings) for a list schema")},
		{"10001 rows", usersBody(7, 1, true, rows...), invalid("Too Many Rows", "at most 10000 rows per request, got 10001")},
		{"row width", usersBody(7, 1, true, []string{maryHash}), invalid("Invalid Payload", "payload.data[0] has 1 values for 2 schema keys")},
		{"empty row", usersBody(7, 1, true, []string{"", ""}), invalid("Invalid Payload", "payload.data[0] has no value")},
		{"unhashed email", usersBody(7, 1, true, []string{"mary@example.com", ""}),
			invalid("Unhashed Identifier", "payload.data[0][0] (EMAIL) must be a lowercase hex SHA-256")},
		{"email not normalised", usersBody(7, 1, true, []string{sha("Mary@Example.com"), ""}),
			invalid("Wrong Normalisation", "payload.data[0][0] (EMAIL) is the hash of a e-mail that was not normalised")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer()
			w := do(s, "POST", usersURL, "application/json", tc.body)
			if w.Code != 400 {
				t.Errorf("status %d", w.Code)
			}
			sameJSON(t, w.Body.String(), tc.want)
			if len(s.Audience("2385")) != 0 || len(s.Uploads()) != 0 {
				t.Error("a rejected request was recorded")
			}
		})
	}
}

func TestUsersSessionSequence(t *testing.T) {
	s := newServer()
	row := []string{maryHash, ""}
	steps := []struct {
		name   string
		method string
		sid    int64
		seq    int
		last   bool
		status int
		want   string
	}{
		{"new session must start at 1", "POST", 11, 2, false, 400,
			envelope("OAuthException", 2650, 1870147, "Invalid parameter", "First Batch Sequence Not 1", "a new session must start with batch_seq 1, got 2")},
		{"first batch", "POST", 11, 1, false, 200, ""},
		{"retry of batch 1", "POST", 11, 1, false, 200, ""},
		{"gap", "POST", 11, 3, false, 400,
			envelope("OAuthException", 2650, 0, "Invalid parameter", "Batch Sequence Out Of Order", "expected batch_seq 2, got 3")},
		{"method switch", "DELETE", 11, 2, false, 400, invalid("Invalid Session", "session 11 was started with POST")},
		{"last batch", "POST", 11, 2, true, 200, ""},
		{"retry of last batch", "POST", 11, 2, true, 200, ""},
		{"after last", "POST", 11, 3, true, 400,
			envelope("OAuthException", 2650, 1870158, "Invalid parameter", "Session Timed Out", "session 11 already received its last batch")},
	}
	for _, st := range steps {
		w := do(s, st.method, usersURL, "application/json", usersBody(st.sid, st.seq, st.last, row))
		if w.Code != st.status {
			t.Fatalf("%s: status %d %s", st.name, w.Code, w.Body)
		}
		if st.want != "" {
			sameJSON(t, w.Body.String(), st.want)
		}
	}
	if n := len(s.Uploads()); n != 4 {
		t.Errorf("%d uploads recorded", n)
	}
}
