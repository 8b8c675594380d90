package forward

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	f := func(name string, err error, want Kind) {
		t.Helper()
		if got := Classify(err); got != want {
			t.Errorf("%s: Classify = %v, want %v", name, got, want)
		}
	}
	f("nil", nil, 0)
	f("retryable", &Error{Kind: Retryable}, Retryable)
	f("throttled wrapped", fmt.Errorf("meta: send: %w", &Error{Kind: Throttled}), Throttled)
	f("permanent joined", errors.Join(errors.New("x"), &Error{Kind: Permanent}), Permanent)
	f("canceled", context.Canceled, Retryable)
	f("deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), Retryable)
	f("net", &net.OpError{Op: "dial", Err: errors.New("connection refused")}, Retryable)
	f("other", errors.New("boom"), Permanent)
}

func TestErrorIsKind(t *testing.T) {
	err := fmt.Errorf("google: %w", &Error{Kind: Throttled, Status: 429, Code: "RESOURCE_EXHAUSTED"})
	if !errors.Is(err, Throttled) {
		t.Error("errors.Is(err, Throttled) = false")
	}
	if errors.Is(err, Permanent) || errors.Is(err, Retryable) {
		t.Error("errors.Is matched the wrong kind")
	}
	var fe *Error
	if !errors.As(err, &fe) || fe.Code != "RESOURCE_EXHAUSTED" {
		t.Errorf("errors.As = %v", fe)
	}
}

func TestErrorString(t *testing.T) {
	f := func(e *Error, want string) {
		t.Helper()
		if got := e.Error(); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
	f(&Error{Kind: Permanent, Status: 400, Code: "100/2804003", Reason: "event too old"},
		"permanent error (status 400, code 100/2804003): event too old")
	f(&Error{Kind: Retryable, Reason: "request timed out after 1.5s", Err: context.DeadlineExceeded},
		"retryable error: request timed out after 1.5s: context deadline exceeded")
	f(&Error{Kind: Throttled, Code: "17"}, "throttled error (code 17)")
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 10, 14, 16, 45, 18, 0, time.UTC)
	f := func(v string, want time.Duration) {
		t.Helper()
		if got := ParseRetryAfter(v, now); got != want {
			t.Errorf("ParseRetryAfter(%q) = %v, want %v", v, got, want)
		}
	}
	f("", 0)
	f("120", 120*time.Second)
	f(" 3 ", 3*time.Second)
	f("0", 0)
	f("-5", 0)
	f("soon", 0)
	f("Wed, 14 Oct 2026 16:46:18 GMT", time.Minute)
	f("Wed, 14 Oct 2026 16:40:00 GMT", 0) // in the past
}

func TestClassifyStatus(t *testing.T) {
	for status, want := range map[int]Kind{
		400: Permanent, 401: Permanent, 403: Permanent, 404: Permanent, 422: Permanent,
		408: Retryable, 429: Throttled, 500: Retryable, 502: Retryable, 503: Retryable, 504: Retryable,
	} {
		if got := ClassifyStatus(status); got != want {
			t.Errorf("ClassifyStatus(%d) = %v, want %v", status, got, want)
		}
	}
}

func TestSecretRedacted(t *testing.T) {
	d := Destination{ID: "123", Token: "EAAB-very-secret"}
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		if s := fmt.Sprintf(format, d); strings.Contains(s, "very-secret") {
			t.Errorf("%s leaks the token: %s", format, s)
		}
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "dest", d, "token", d.Token)
	if strings.Contains(buf.String(), "very-secret") {
		t.Errorf("slog leaks the token: %s", buf.String())
	}
	if string(d.Token) != "EAAB-very-secret" {
		t.Error("string(Secret) must return the value")
	}
}

func TestIdentityCheck(t *testing.T) {
	hash := "f1904cf1a9d73a55fa5de0ac823c4403ded71afd4c3248d00bdcd0866552bb79"
	if err := (Identity{Email: hash, GooglePhone: hash}).Check(); err != nil {
		t.Errorf("valid identity: %v", err)
	}
	for _, id := range []Identity{
		{Email: "mary@example.com"},
		{GoogleEmail: strings.ToUpper(hash)},
		{Phone: "+15559876543"},
		{GooglePhone: hash[:63]},
	} {
		err := id.Check()
		if Classify(err) != Permanent {
			t.Errorf("%+v: Check = %v, want a permanent error", id, err)
		}
		if err != nil && strings.Contains(err.Error(), "mary@") {
			t.Errorf("error echoes the plaintext: %v", err)
		}
	}
}

func TestValueCheck(t *testing.T) {
	for v, ok := range map[Value]bool{
		{}:                                   true,
		{Amount: "1500", Currency: "EUR"}:    true,
		{Amount: "1500.50", Currency: "EUR"}: true,
		{Amount: "1,5", Currency: "EUR"}:     false,
		{Amount: "-1", Currency: "EUR"}:      false,
		{Amount: "1.", Currency: "EUR"}:      false,
		{Amount: "10", Currency: "eur"}:      false,
		{Amount: "10"}:                       false,
		{Currency: "EUR"}:                    false,
	} {
		if err := v.Check(); (err == nil) != ok {
			t.Errorf("%+v: Check = %v, want ok=%v", v, err, ok)
		}
	}
}

func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"120", "Wed, 14 Oct 2026 16:46:18 GMT", "-1", "99999999999999999999", ""} {
		f.Add(s)
	}
	now := time.Date(2026, 10, 14, 16, 45, 18, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		if d := ParseRetryAfter(v, now); d < 0 {
			t.Fatalf("ParseRetryAfter(%q) = %v", v, d)
		}
	})
}
