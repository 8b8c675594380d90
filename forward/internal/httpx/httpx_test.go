package httpx

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jobpixel/jobpixel/forward"
)

func TestDoTimeoutIsRetryableAndRedacted(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	_, err := Do(context.Background(), srv.Client(), Request{Method: "POST", URL: srv.URL + "/x?access_token=SECRET"}, 50*time.Millisecond)
	var fe *forward.Error
	if !errors.As(err, &fe) || fe.Kind != forward.Retryable || !strings.Contains(fe.Reason, "timed out") {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error(), "SECRET") {
		t.Errorf("token leaked: %v", err)
	}
}

func TestDoParentCancelled(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	_, err := Do(ctx, srv.Client(), Request{Method: "GET", URL: srv.URL}, time.Minute)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	var fe *forward.Error
	if errors.As(err, &fe) {
		t.Errorf("a caller's cancellation must not look like a platform time-out: %v", fe)
	}
}

func TestDoReturnsAnyStatus(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-A") != "1" || r.Method != "DELETE" {
			w.WriteHeader(400)
			return
		}
		b := make([]byte, 3)
		n, _ := r.Body.Read(b)
		w.Header().Set("Retry-After", "3")
		w.WriteHeader(503)
		w.Write(b[:n])
	}))
	defer srv.Close()
	resp, err := Do(context.Background(), srv.Client(), Request{Method: "DELETE", URL: srv.URL, Header: http.Header{"X-A": {"1"}}, Body: []byte("abc")}, time.Second)
	if err != nil || resp.Status != 503 || string(resp.Body) != "abc" || resp.Header.Get("Retry-After") != "3" {
		t.Fatalf("resp %+v err %v", resp, err)
	}
}

func TestDoConnectionRefused(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	_, err := Do(context.Background(), nil, Request{Method: "GET", URL: url + "?access_token=SECRET"}, time.Second)
	if forward.Classify(err) != forward.Retryable || strings.Contains(err.Error(), "SECRET") {
		t.Fatalf("err = %v", err)
	}
}

// TestDoFollowsNoRedirect: a platform answering 307 (which would re-send
// the body) or 302 to another host gets no second request there, whatever
// the caller's client would do, and the answer is a Permanent error naming
// the host.
func TestDoFollowsNoRedirect(t *testing.T) {
	var elsewhere int
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { elsewhere++ }))
	defer other.Close()
	for _, status := range []int{http.StatusTemporaryRedirect, http.StatusFound, http.StatusPermanentRedirect} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, other.URL+"/steal", status)
		}))
		for _, hc := range []*http.Client{nil, srv.Client(), {CheckRedirect: func(*http.Request, []*http.Request) error { return nil }}} {
			_, err := Do(context.Background(), hc, Request{Method: "POST", URL: srv.URL + "/events", Body: []byte(`{"em":"hash"}`)}, time.Second)
			var fe *forward.Error
			if !errors.As(err, &fe) || fe.Kind != forward.Permanent || fe.Status != status || !strings.Contains(fe.Reason, strings.TrimPrefix(other.URL, "http://")) {
				t.Errorf("status %d: err = %v", status, err)
			}
		}
		srv.Close()
	}
	if elsewhere != 0 {
		t.Fatalf("%d requests followed a redirect to another host", elsewhere)
	}
}
