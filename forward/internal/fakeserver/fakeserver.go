// Package fakeserver is the machinery shared by the fake platform servers
// (forward/meta/metatest, forward/google/googletest, forward/linkedin/linkedintest): scripted
// fault injection, an httptest.Server wrapper, exact-case strict JSON
// decoding and hashing helpers.
package fakeserver

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Fault is a scripted answer that replaces the normal handling of one
// request.
type Fault struct {
	// Status is the HTTP status to answer with. If it is 0 and Hang is set,
	// the request is handled normally after the hang (a slow success).
	Status int
	// Header is added to the response (e.g. Retry-After).
	Header http.Header
	// Body is the response body, typically the platform's error envelope.
	Body []byte
	// Hang delays the answer by this long, or until the client gives up
	// or the server is closed. If the client gives up nothing is answered
	// and the request is not recorded.
	Hang time.Duration
}

// Base holds the fault script and the optional httptest.Server of a fake.
// Its zero value is not usable; call New.
type Base struct {
	mu      sync.Mutex
	faults  []Fault
	hits    int
	srv     *httptest.Server
	closed  chan struct{}
	closeMu sync.Once
}

// New returns an empty Base.
func New() *Base { return &Base{closed: make(chan struct{})} }

// Inject queues faults; each answers one future request, in order.
func (b *Base) Inject(faults ...Fault) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.faults = append(b.faults, faults...)
}

// InjectN queues n copies of f.
func (b *Base) InjectN(n int, f Fault) {
	for range n {
		b.Inject(f)
	}
}

// Pending returns the number of queued faults not yet used.
func (b *Base) Pending() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.faults)
}

// Hits returns the number of requests received, faulted or not.
func (b *Base) Hits() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.hits
}

// Wrap returns a handler that answers with the next queued fault, if any,
// and otherwise calls next.
func (b *Base) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.hits++
		var f *Fault
		if len(b.faults) > 0 {
			f = &b.faults[0]
			b.faults = b.faults[1:]
		}
		b.mu.Unlock()
		if f == nil {
			next.ServeHTTP(w, r)
			return
		}
		if f.Hang > 0 {
			t := time.NewTimer(f.Hang)
			select {
			case <-r.Context().Done():
				t.Stop()
				return
			case <-b.closed:
				t.Stop()
				return
			case <-t.C:
			}
		}
		if f.Status == 0 {
			next.ServeHTTP(w, r)
			return
		}
		for k, vs := range f.Header {
			w.Header()[k] = vs
		}
		if w.Header().Get("Content-Type") == "" && len(f.Body) > 0 {
			w.Header().Set("Content-Type", "application/json")
		}
		w.WriteHeader(f.Status)
		w.Write(f.Body)
	})
}

// Start serves h (wrapped by Wrap) on a new httptest.Server.
func (b *Base) Start(h http.Handler) {
	b.srv = httptest.NewServer(b.Wrap(h))
}

// URL returns the base URL of the started server ("" if not started).
func (b *Base) URL() string {
	if b.srv == nil {
		return ""
	}
	return b.srv.URL
}

// Client returns an *http.Client for the started server.
func (b *Base) Client() *http.Client {
	if b.srv == nil {
		return http.DefaultClient
	}
	return b.srv.Client()
}

// Close releases hanging requests and shuts the server down.
func (b *Base) Close() {
	b.closeMu.Do(func() { close(b.closed) })
	if b.srv != nil {
		b.srv.CloseClientConnections()
		b.srv.Close()
	}
}

// RetryAfterHeader returns a header with Retry-After set to whole seconds
// (rounded up), or nil for d <= 0.
func RetryAfterHeader(d time.Duration) http.Header {
	if d <= 0 {
		return nil
	}
	secs := int64((d + time.Second - 1) / time.Second)
	return http.Header{"Retry-After": {strconv.FormatInt(secs, 10)}}
}

// MustJSON marshals v or panics.
func MustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// WriteJSON answers status with v as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(MustJSON(v))
}

// ReadBody reads at most limit bytes of r's body; a longer body is an
// error.
func ReadBody(r *http.Request, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("body larger than %d bytes", limit)
	}
	return b, nil
}

// SHA256 returns the lowercase hex SHA-256 of s.
func SHA256(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// IsSHA256 reports whether s is exactly 64 lowercase hex characters. It is
// deliberately not forward.IsSHA256: a fake that checked requests with the
// client's own code could not catch the client's mistakes.
func IsSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// IsHexish reports whether s is 64 hex characters in any case: a value
// that looks hashed.
func IsHexish(s string) bool {
	return len(s) == 64 && strings.IndexFunc(s, func(r rune) bool {
		return !('0' <= r && r <= '9' || 'a' <= r && r <= 'f' || 'A' <= r && r <= 'F')
	}) < 0
}

// DecodeError is a strict decoding failure.
type DecodeError struct {
	// Path is the dotted path of the offending value, e.g.
	// "data[3].user_data.em" (type errors carry no array indexes), or ""
	// for a malformed document.
	Path string
	// Kind is "syntax", "unknown field" or "type".
	Kind string
	// Problem describes it, e.g. "JSON string where int64 is required".
	Problem string
}

// Error returns the message used in the fakes' envelopes.
func (e *DecodeError) Error() string {
	switch e.Kind {
	case "unknown field":
		return fmt.Sprintf("unknown field %q", e.Path)
	case "type":
		return fmt.Sprintf("field %s: wrong type: %s", e.Path, e.Problem)
	}
	return "malformed JSON: " + e.Problem
}

// Slash returns Path in LinkedIn's form: "/conversionValue/amount".
func (e *DecodeError) Slash() string {
	p := strings.NewReplacer(".", "/", "[", "/", "]", "").Replace(e.Path)
	return "/" + p
}

// Decode unmarshals data into v (a pointer to a struct) strictly: the
// document must be a single JSON value, every object key must match a json
// tag of the target exactly (case-sensitive, unlike encoding/json), and
// types must match. The error is a *DecodeError.
func Decode(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return &DecodeError{Kind: "syntax", Problem: err.Error()}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return &DecodeError{Kind: "syntax", Problem: "trailing data after the top-level value"}
	}
	if err := checkKeys(raw, reflect.TypeOf(v).Elem(), ""); err != nil {
		return err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return &DecodeError{Path: te.Field, Kind: "type", Problem: fmt.Sprintf("JSON %s where %s is required", te.Value, te.Type)}
		}
		return &DecodeError{Kind: "syntax", Problem: err.Error()}
	}
	return nil
}

var rawType = reflect.TypeOf(json.RawMessage(nil))

func checkKeys(raw json.RawMessage, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == rawType || t.Kind() == reflect.Interface {
		return nil
	}
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || string(trimmed) == "null" {
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		if trimmed[0] != '{' {
			return nil // json.Unmarshal reports the type error
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(trimmed, &obj); err != nil {
			return err
		}
		fields := map[string]reflect.Type{}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" || !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			fields[name] = f.Type
		}
		for k, v := range obj {
			ft, ok := fields[k]
			p := join(path, k)
			if !ok {
				return &DecodeError{Path: p, Kind: "unknown field"}
			}
			if err := checkKeys(v, ft, p); err != nil {
				return err
			}
		}
	case reflect.Slice, reflect.Array:
		if trimmed[0] != '[' {
			return nil
		}
		var arr []json.RawMessage
		if err := json.Unmarshal(trimmed, &arr); err != nil {
			return err
		}
		for i, v := range arr {
			if err := checkKeys(v, t.Elem(), path+"["+strconv.Itoa(i)+"]"); err != nil {
				return err
			}
		}
	case reflect.Map:
		if trimmed[0] != '{' {
			return nil
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(trimmed, &obj); err != nil {
			return err
		}
		for k, v := range obj {
			if err := checkKeys(v, t.Elem(), join(path, k)); err != nil {
				return err
			}
		}
	}
	return nil
}

func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}
