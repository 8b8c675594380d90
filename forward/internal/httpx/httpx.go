// Package httpx is the HTTP edge shared by the platform clients: one
// attempt with a time-out, no redirect followed, transport errors classified
// as *forward.Error, credentials kept out of error text.
package httpx

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/jobpixel/jobpixel/forward"
)

// MaxBody is the most of a response body that is read.
const MaxBody = 8 << 20

// Response is a fully read HTTP response.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Request describes one attempt.
type Request struct {
	Method string
	URL    string
	Header http.Header
	Body   []byte // sent as-is; may be nil
}

// noRedirect makes a client return a redirect as the response instead of
// following it.
func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// defaultClient is http.DefaultClient's transport without redirects.
var defaultClient = &http.Client{CheckRedirect: noRedirect}

// Do makes one attempt of r with hc (nil: the default transport), bounded
// by timeout (0 = none beyond ctx). It never follows a redirect, whatever
// hc's CheckRedirect says: a body with personal data is sent to the URL the
// caller built (a host on the allow-list) and nowhere else, and a 3xx comes
// back as a Permanent *forward.Error naming the host it pointed to. Any
// other response, whatever its status, is returned with a nil error.
// Transport failures come back as *forward.Error: Retryable for time-outs
// and network errors, Permanent for e.g. a malformed URL. If ctx itself is
// done the error wraps ctx.Err(). Error text never contains the URL's query
// (Meta puts the access token there).
func Do(ctx context.Context, hc *http.Client, r Request, timeout time.Duration) (*Response, error) {
	if hc == nil {
		hc = defaultClient
	} else {
		c := *hc
		c.CheckRedirect = noRedirect
		hc = &c
	}
	actx, cancel := ctx, context.CancelFunc(func() {})
	if timeout > 0 {
		actx, cancel = context.WithTimeout(ctx, timeout)
	}
	defer cancel()
	var body io.Reader
	if r.Body != nil {
		body = bytes.NewReader(r.Body)
	}
	req, err := http.NewRequestWithContext(actx, r.Method, r.URL, body)
	if err != nil {
		return nil, &forward.Error{Kind: forward.Permanent, Reason: "cannot build request", Err: redact(err)}
	}
	for k, vs := range r.Header {
		req.Header[k] = vs
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, transportError(ctx, actx, timeout, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxBody))
	if err != nil {
		return nil, transportError(ctx, actx, timeout, fmt.Errorf("read response: %w", err))
	}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		to := "no Location"
		if loc, err := resp.Location(); err == nil {
			to = "host " + loc.Host
		}
		return nil, &forward.Error{Kind: forward.Permanent, Status: resp.StatusCode,
			Reason: "the platform answered with a redirect (" + to + "), which is never followed"}
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

func transportError(ctx, actx context.Context, timeout time.Duration, err error) error {
	err = redact(err)
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%w: %w", cerr, err)
	}
	if actx.Err() != nil {
		return &forward.Error{Kind: forward.Retryable, Reason: fmt.Sprintf("request timed out after %v", timeout), Err: err}
	}
	// Transport failures are transient unless the peer's certificate is
	// wrong, which no retry will fix.
	kind := forward.Retryable
	var (
		unknownAuthority x509.UnknownAuthorityError
		hostname         x509.HostnameError
		invalid          x509.CertificateInvalidError
		verify           *tls.CertificateVerificationError
	)
	if errors.As(err, &unknownAuthority) || errors.As(err, &hostname) || errors.As(err, &invalid) || errors.As(err, &verify) {
		kind = forward.Permanent
	}
	return &forward.Error{Kind: kind, Reason: "transport error", Err: err}
}

// redact removes the query string from a *url.Error's URL.
func redact(err error) error {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return err
	}
	if u, perr := url.Parse(ue.URL); perr == nil && u.RawQuery != "" {
		u.RawQuery = "REDACTED"
		cp := *ue
		cp.URL = u.String()
		if ue == err {
			return &cp
		}
		return fmt.Errorf("%s: %w", cp.Error(), ue.Err)
	}
	return err
}

// JSONHeader returns a header with Content-Type and Accept set to JSON.
func JSONHeader() http.Header {
	return http.Header{
		"Content-Type": {"application/json"},
		"Accept":       {"application/json"},
	}
}

// Timeout returns d, or def if d is zero.
func Timeout(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}
