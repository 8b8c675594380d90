package ingest

import (
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"
)

// TestHitFieldsBothEndpoints sends every field of hitFields, under each of
// its names, once as a /p.gif query argument and once in a /e body at its
// scope, and checks it lands in the field's place of the raw hit — and
// nowhere else.
func TestHitFieldsBothEndpoints(t *testing.T) {
	s := newTestServer(t)
	for i := range hitFields {
		f := &hitFields[i]
		if len(f.query) == 0 || len(f.json) == 0 {
			t.Errorf("field %v: needs a /p.gif name and a /e key", f.query)
			continue
		}
		for _, name := range f.query {
			val := "v-" + name
			var args fasthttp.Args
			args.Parse(url.Values{name: {val}}.Encode())
			var raw rawHit
			parseQuery(&args, &raw)
			checkOnly(t, "/p.gif "+name, &raw, field(i), val)
		}
		for _, key := range f.json {
			val := "v-" + key
			body := jsonBody(f.in, key, val)
			v, err := fastjson.Parse(body)
			if err != nil {
				t.Fatalf("%s: %v", body, err)
			}
			raws, err := s.parseBatch(v, new([]rawHit))
			if err != nil {
				t.Errorf("/e %s: %v", body, err)
				continue
			}
			checkOnly(t, "/e "+body, &raws[0], field(i), val)
		}
	}
}

// jsonBody is a one-event /e body with key=val at scope in.
func jsonBody(in scope, key, val string) string {
	kv := fmt.Sprintf("%q:%q", key, val)
	switch in {
	case inEvent:
		return `{"events":[{` + kv + `}]}`
	case inConsentMode:
		return `{"consent_mode":{` + kv + `},"events":[{}]}`
	case inConsent:
		return `{"consent":{` + kv + `},"events":[{}]}`
	}
	return `{` + kv + `,"events":[{}]}`
}

// checkOnly fails unless raw holds val as field id and nothing else.
func checkOnly(t *testing.T, what string, raw *rawHit, id field, val string) {
	t.Helper()
	for j, got := range raw.v {
		switch {
		case field(j) == id && string(got) != val:
			t.Errorf("%s: field holds %q, want %q", what, got, val)
		case field(j) != id && got != nil:
			t.Errorf("%s: also set field %v to %q", what, hitFields[j].query, got)
		}
	}
}

// TestHitFieldEventOverride checks that an event's own value of a field
// an event may override wins over the body's, and the body's applies to
// events without one.
func TestHitFieldEventOverride(t *testing.T) {
	s := newTestServer(t)
	for i := range hitFields {
		f := &hitFields[i]
		if f.in != inBodyOrEvent {
			continue
		}
		k := f.json[0]
		body := fmt.Sprintf(`{%q:"body","events":[{%q:"event"},{}]}`, k, k)
		raws, err := s.parseBatch(fastjson.MustParse(body), new([]rawHit))
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		if a, b := string(raws[0].v[i]), string(raws[1].v[i]); a != "event" || b != "body" {
			t.Errorf("%s: events hold %q, %q; want event, body", body, a, b)
		}
	}
}

// TestHitFieldLimits checks every limit of hitFields at its bound on both
// endpoints: max bytes are accepted, one more is field_too_long.
func TestHitFieldLimits(t *testing.T) {
	s := newTestServer(t)
	for i := range hitFields {
		f := &hitFields[i]
		if f.max == 0 {
			continue
		}
		for _, n := range []int{f.max, f.max + 1} {
			want := ""
			if n > f.max {
				want = reasonFieldTooLong
			}
			val := strings.Repeat("a", n)
			q := url.Values{"c": {"cmp_1"}, "e": {"page_view"}}
			q.Set(f.query[0], val)
			var raw rawHit
			var args fasthttp.Args
			args.Parse(q.Encode())
			parseQuery(&args, &raw)
			if got := raw.validate(); got != want {
				t.Errorf("/p.gif %s of %d bytes: %q, want %q", f.query[0], n, got, want)
			}
			body := jsonBody(f.in, f.json[0], val)
			raws, err := s.parseBatch(fastjson.MustParse(body), new([]rawHit))
			if err != nil {
				t.Fatal(err)
			}
			r := raws[0]
			r.v[fCampaign], r.v[fEvent] = []byte("cmp_1"), []byte("page_view")
			if got := r.validate(); got != want {
				t.Errorf("/e %s of %d bytes: %q, want %q", f.json[0], n, got, want)
			}
		}
	}
}

// TestREADMEHitFields holds the README's field table to hitFields.
func TestREADMEHitFields(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("| `/p.gif` parameter | `/e` key | at most | meaning |\n|---|---|---|---|\n")
	for i := range hitFields {
		f := &hitFields[i]
		limit := "—"
		if f.max > 0 {
			limit = fmt.Sprintf("%d bytes", f.max)
		}
		js := names(f.json, jsonPrefix[f.in])
		if f.in == inBodyOrEvent {
			js += ", also per event"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", names(f.query, ""), js, limit, f.doc)
	}
	if !strings.Contains(string(readme), b.String()) {
		t.Errorf("README.md's hit field table differs from ingest/fields.go; it should read:\n\n%s", b.String())
	}
}

var jsonPrefix = map[scope]string{inBody: "", inBodyOrEvent: "", inEvent: "events[].", inConsentMode: "consent_mode.", inConsent: "consent."}

// names renders `a` (or `b`) with prefix p.
func names(ns []string, p string) string {
	s := "`" + p + ns[0] + "`"
	for _, n := range ns[1:] {
		s += " (or `" + p + n + "`)"
	}
	return s
}
