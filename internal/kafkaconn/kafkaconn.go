// Package kafkaconn builds the connections of every Kafka client jobpixel
// runs (ingest's producers, the pipeline's and the relays' consumer groups,
// the readiness probe) from one set of options: TLS and SASL PLAIN,
// SCRAM-SHA-256 or SCRAM-SHA-512, as managed Kafka services require.
//
// kafka-go reports a failed SASL handshake as the broker dropping the
// connection (io.ErrUnexpectedEOF), the same as a wrong password, a missing
// SASL listener or a wrong mechanism; Check turns that into an error that
// says what to fix, and marks it Misconfigured, so a process fails at start
// instead of retrying silently; a broker that is merely down or unreachable
// is not Misconfigured (it may come back).
package kafkaconn

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// Mechanisms are the SASL mechanisms Options.SASLMechanism accepts ("" is
// none).
var Mechanisms = []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}

// Misconfigured is wrapped by Check's error when a broker was reached but
// the TLS or SASL handshake failed in a way that retrying will not fix (an
// untrusted certificate, TLS against a plain listener, a wrong password or
// mechanism, SASL or TLS missing). A broker that refuses or drops the TCP
// connection, or cannot be resolved, is not Misconfigured.
var Misconfigured = errors.New("kafka connection misconfigured")

// Options say how to reach the brokers. The zero value is plain text
// without authentication.
type Options struct {
	// TLS, when non-nil, encrypts every connection (see package tlsconf).
	TLS *tls.Config
	// SASLMechanism is "", "PLAIN", "SCRAM-SHA-256" or "SCRAM-SHA-512" (in
	// any case); User and Password are its credentials, both required with
	// a mechanism and refused without one.
	SASLMechanism  string
	User, Password string
}

// Conn holds the connection settings derived from Options; its Dialer and
// Transport are shared by all clients of a process. The zero Conn dials in
// plain text.
type Conn struct {
	opts   Options
	mech   sasl.Mechanism
	dialer *kafka.Dialer
	tr     *kafka.Transport
}

// New validates o and returns the connection settings.
func New(o Options) (*Conn, error) {
	c := &Conn{opts: o}
	switch strings.ToUpper(o.SASLMechanism) {
	case "":
		if o.User != "" || o.Password != "" {
			return nil, errors.New("kafka: a SASL user or password without a SASL mechanism (set -kafka.sasl-mechanism)")
		}
	case "PLAIN":
		c.mech = plain.Mechanism{Username: o.User, Password: o.Password}
	case "SCRAM-SHA-256", "SCRAM-SHA-512":
		algo := scram.SHA256
		if strings.HasSuffix(strings.ToUpper(o.SASLMechanism), "512") {
			algo = scram.SHA512
		}
		m, err := scram.Mechanism(algo, o.User, o.Password)
		if err != nil {
			return nil, fmt.Errorf("kafka: SASL %s: %w", o.SASLMechanism, err)
		}
		c.mech = m
	default:
		return nil, fmt.Errorf("kafka: unknown SASL mechanism %q (-kafka.sasl-mechanism: want one of %s)", o.SASLMechanism, strings.Join(Mechanisms, ", "))
	}
	if c.mech != nil && (o.User == "" || o.Password == "") {
		return nil, fmt.Errorf("kafka: SASL %s needs a user and a password (-kafka.sasl-user, -kafka.sasl-password)", o.SASLMechanism)
	}
	c.dialer = &kafka.Dialer{Timeout: 10 * time.Second, DualStack: true, TLS: o.TLS, SASLMechanism: c.mech}
	c.tr = &kafka.Transport{Dial: (&net.Dialer{Timeout: 10 * time.Second}).DialContext, TLS: o.TLS, SASL: c.mech}
	return c, nil
}

// Dialer is for kafka.ReaderConfig.Dialer and
// kafka.ConsumerGroupConfig.Dialer.
func (c *Conn) Dialer() *kafka.Dialer { return c.dialer }

// Transport is for kafka.Writer.Transport and kafka.Client.Transport.
func (c *Conn) Transport() *kafka.Transport { return c.tr }

// Check connects to each broker in turn until one completes the TLS and
// SASL handshakes and answers a metadata request, and explains the failure
// when none does; the error wraps Misconfigured when a broker was reached
// and a handshake failed for a cause Check names (see Misconfigured). Use
// it at start, before any client retries in the background.
func (c *Conn) Check(ctx context.Context, brokers []string) error {
	var errs []error
	for _, b := range brokers {
		conn, err := c.dialer.DialContext(ctx, "tcp", b)
		if err == nil {
			if dl, ok := ctx.Deadline(); ok {
				_ = conn.SetDeadline(dl)
			}
			_, err = conn.Brokers()
			conn.Close()
			if err == nil {
				return nil
			}
		}
		errs = append(errs, fmt.Errorf("%s: %w", b, c.explain(err)))
	}
	if len(errs) == 0 {
		return errors.New("kafka: no brokers configured")
	}
	return fmt.Errorf("kafka: no broker accepted the connection: %w", errors.Join(errs...))
}

// explain names the likely cause of a failed handshake; the causes it
// names, and only those, are Misconfigured.
func (c *Conn) explain(err error) error {
	var opErr *net.OpError
	var dnsErr *net.DNSError
	var recordErr tls.RecordHeaderError
	var certErr *tls.CertificateVerificationError
	eof := errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)
	switch {
	case errors.As(err, &opErr) && opErr.Op == "dial", errors.As(err, &dnsErr):
		// Down or unreachable (refused, timed out, unknown host): the
		// handshake never began.
		return err
	case errors.As(err, &certErr):
		return misconfigured(err, "the broker's certificate is not trusted: check -kafka.tls-ca and -kafka.tls-server-name")
	case errors.As(err, &recordErr):
		return misconfigured(err, "the broker does not speak TLS on this port: drop -kafka.tls or use its TLS listener")
	case c.opts.TLS != nil && errors.Is(err, context.DeadlineExceeded):
		return misconfigured(err, "no TLS handshake in time: does the broker speak TLS on this port? drop -kafka.tls or use its TLS listener")
	case c.mech != nil && (eof || errors.Is(err, kafka.SASLAuthenticationFailed)):
		return misconfigured(err, fmt.Sprintf("SASL %s as %q failed: wrong user or password (-kafka.sasl-user, -kafka.sasl-password), or the broker does not offer this mechanism (-kafka.sasl-mechanism) on this listener", c.mech.Name(), c.opts.User))
	case c.mech == nil && eof:
		return misconfigured(err, "the broker closed the connection: does it require TLS (-kafka.tls) or SASL (-kafka.sasl-mechanism)?")
	}
	return err
}

// misconfiguration is a failed handshake with its explanation; it is
// Misconfigured and wraps the handshake's error.
type misconfiguration struct {
	err  error
	hint string
}

func misconfigured(err error, hint string) error { return &misconfiguration{err: err, hint: hint} }

func (m *misconfiguration) Error() string   { return m.err.Error() + " (" + m.hint + ")" }
func (m *misconfiguration) Unwrap() []error { return []error{m.err, Misconfigured} }
