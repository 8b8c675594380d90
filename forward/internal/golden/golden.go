// Package golden records the HTTP requests a client makes and compares them
// with golden files in testdata/, so the exact wire format of every
// platform request is reviewed as a file. Run tests with -update to
// rewrite the files.
package golden

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

// Headers are the request headers written to golden files.
var Headers = []string{
	"Authorization", "Content-Type", "Developer-Token", "Login-Customer-Id",
	"Linkedin-Version", "X-Restli-Protocol-Version", "X-Restli-Method",
}

// Request is a recorded request.
type Request struct {
	Method  string            `json:"method"`
	Path    string            `json:"path"`
	Query   string            `json:"query,omitempty"`
	Headers map[string]string `json:"headers"`
	Body    json.RawMessage   `json:"body,omitempty"`
}

// Recorder is an httptest.Server that records requests and answers each
// with Status and Body.
type Recorder struct {
	*httptest.Server
	mu       sync.Mutex
	requests []Request
}

// Start returns a Recorder answering status with body.
func Start(t *testing.T, status int, body string) *Recorder {
	r := &Recorder{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		rec := Request{Method: req.Method, Path: req.URL.Path, Query: req.URL.RawQuery, Headers: map[string]string{}}
		for _, h := range Headers {
			if v := req.Header.Get(h); v != "" {
				rec.Headers[h] = v
			}
		}
		if len(b) > 0 {
			rec.Body = b
		}
		r.mu.Lock()
		r.requests = append(r.requests, rec)
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(r.Close)
	return r
}

// Requests returns the recorded requests.
func (r *Recorder) Requests() []Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Request(nil), r.requests...)
}

// Check compares the recorded requests, indented, with testdata/name.
func (r *Recorder) Check(t *testing.T, name string) {
	t.Helper()
	got, err := json.MarshalIndent(r.Requests(), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, got, "", "  "); err != nil {
		t.Fatal(err)
	}
	buf.WriteByte('\n')
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("requests differ from %s (run with -update to accept):\n%s", path, buf.Bytes())
	}
}
