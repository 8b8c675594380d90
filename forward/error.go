package forward

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Kind says what a caller should do about a failed send.
//
// The zero Kind means "no error" and is what Classify returns for nil.
// Kind implements error only so that it can be the target of errors.Is:
//
//	if errors.Is(err, forward.Throttled) { ... }
type Kind int

const (
	// Retryable failures are transient (timeouts, 5xx, transient platform
	// codes): the same request may succeed if sent again later.
	Retryable Kind = iota + 1
	// Throttled failures mean the platform asked us to slow down; retry
	// after Error.RetryAfter (or a backoff when it is zero).
	Throttled
	// Permanent failures will fail again unchanged (invalid data, bad
	// credentials, missing permission). Dead-letter the items with the
	// reason; do not retry.
	Permanent
)

// String returns "retryable", "throttled", "permanent" or "none".
func (k Kind) String() string {
	switch k {
	case Retryable:
		return "retryable"
	case Throttled:
		return "throttled"
	case Permanent:
		return "permanent"
	case 0:
		return "none"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Error returns k.String(); it exists so a Kind can be an errors.Is target.
func (k Kind) Error() string { return k.String() }

// Error is the single classification every platform client maps its error
// envelope into, exactly once, at the HTTP edge.
//
// Use errors.As to get at the fields and errors.Is(err, forward.Permanent)
// (or Retryable, Throttled) to test the Kind.
type Error struct {
	// Kind tells the caller whether to retry, back off or dead-letter.
	Kind Kind
	// Status is the HTTP status of the response; 0 when no response was
	// received (transport error, time-out) or the item was refused locally.
	Status int
	// Code is the platform's error code as text, e.g. "190" or
	// "2650/1870145" (Meta code/subcode), "RESOURCE_EXHAUSTED" (Google),
	// "INVALID_ACCESS_TOKEN" (LinkedIn). Empty when the platform gave none.
	Code string
	// RetryAfter is how long the platform asked us to wait (Retry-After
	// header or equivalent); 0 when it did not say.
	RetryAfter time.Duration
	// Reason is a human-readable explanation, suitable for a dead-letter
	// row. It never contains credentials.
	Reason string
	// Err is the underlying error, if any.
	Err error
}

// Error formats the classification, status, code, reason and cause.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Kind.String())
	b.WriteString(" error")
	if e.Status != 0 || e.Code != "" {
		b.WriteString(" (")
		if e.Status != 0 {
			b.WriteString("status ")
			b.WriteString(strconv.Itoa(e.Status))
		}
		if e.Code != "" {
			if e.Status != 0 {
				b.WriteString(", ")
			}
			b.WriteString("code ")
			b.WriteString(e.Code)
		}
		b.WriteString(")")
	}
	if e.Reason != "" {
		b.WriteString(": ")
		b.WriteString(e.Reason)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is the Kind of e, so that
// errors.Is(err, forward.Throttled) works through any wrapping.
func (e *Error) Is(target error) bool {
	k, ok := target.(Kind)
	return ok && k == e.Kind
}

// Classify returns the Kind of err: 0 for nil; the Kind of the first *Error
// in the chain; Retryable for context cancellation/deadline, network errors
// and truncated responses (nothing is known to be wrong with the data);
// Permanent for anything else.
func Classify(err error) Kind {
	if err == nil {
		return 0
	}
	var fe *Error
	if errors.As(err, &fe) {
		return fe.Kind
	}
	var ne net.Error
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return Retryable
	case errors.As(err, &ne):
		return Retryable
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return Retryable
	}
	return Permanent
}

// RetryAfterOf returns the RetryAfter of the first *Error in err's chain,
// or 0.
func RetryAfterOf(err error) time.Duration {
	var fe *Error
	if errors.As(err, &fe) {
		return fe.RetryAfter
	}
	return 0
}

// ClassifyStatus maps an HTTP status without a more specific platform code:
// 429 is Throttled; 408, 425 and every 5xx are Retryable; everything else
// (including 2xx, which a caller should not be classifying) is Permanent.
func ClassifyStatus(status int) Kind {
	switch {
	case status == http.StatusTooManyRequests:
		return Throttled
	case status == http.StatusRequestTimeout, status == http.StatusTooEarly, status >= 500:
		return Retryable
	}
	return Permanent
}

// ParseRetryAfter parses a Retry-After header value, either delta-seconds
// ("120") or an HTTP date, relative to now. It returns 0 for an empty,
// malformed, negative or past value.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		const maxSecs = int64(1<<63-1) / int64(time.Second)
		if secs > maxSecs {
			secs = maxSecs
		}
		return time.Duration(secs) * time.Second
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0
	}
	if d := t.Sub(now); d > 0 {
		return d
	}
	return 0
}

// Rejectf returns a Permanent *Error for an item refused locally, before
// anything was sent; reason becomes Error.Reason.
func Rejectf(format string, args ...any) *Error {
	return &Error{Kind: Permanent, Reason: fmt.Sprintf(format, args...)}
}
