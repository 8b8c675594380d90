// Package kafkaconn builds the connections of every Kafka client jobpixel
// runs (ingest's producers, the pipeline's and the relays' consumer groups,
// the readiness probe) from one set of options: TLS and SASL PLAIN,
// SCRAM-SHA-256 or SCRAM-SHA-512, as managed Kafka services require.
//
// kafka-go reports a failed SASL handshake as the broker dropping the
// connection (io.ErrUnexpectedEOF), the same as a wrong password, a missing
// SASL listener or a wrong mechanism; Check turns that into an error that
// says what to fix, so a process fails at start instead of retrying
// silently.
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

// Options say how to reach the brokers. The zero value is plain text
// without authentication.
type Options struct {
	// TLS, when non-nil, encrypts every connection (see package tlsconf).
	TLS *tls.Config
	// SASLMechanism is "", "PLAIN", "SCRAM-SHA-256" or "SCRAM-SHA-512";
	// User and Password are its credentials.
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
		return nil, fmt.Errorf("kafka: unknown SASL mechanism %q (want one of %s)", o.SASLMechanism, strings.Join(Mechanisms, ", "))
	}
	if c.mech != nil && o.User == "" {
		return nil, fmt.Errorf("kafka: SASL %s needs a user", o.SASLMechanism)
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
// when none does. Use it at start, before any client retries in the
// background.
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
	return fmt.Errorf("kafka: no broker reachable: %w", errors.Join(errs...))
}

// explain names the likely cause of a failed handshake.
func (c *Conn) explain(err error) error {
	var recordErr tls.RecordHeaderError
	var certErr *tls.CertificateVerificationError
	switch {
	case errors.As(err, &certErr):
		return fmt.Errorf("%w (the broker's certificate is not trusted: check -kafka.tls-ca and -kafka.tls-server-name)", err)
	case errors.As(err, &recordErr):
		return fmt.Errorf("%w (the broker does not speak TLS on this port: drop -kafka.tls or use its TLS listener)", err)
	case c.opts.TLS != nil && errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w (no TLS handshake in time: does the broker speak TLS on this port? drop -kafka.tls or use its TLS listener)", err)
	case c.mech != nil && (errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, kafka.SASLAuthenticationFailed)):
		return fmt.Errorf("%w (SASL %s as %q failed: wrong user or password, or the broker does not offer this mechanism on this listener)", err, c.mech.Name(), c.opts.User)
	case c.mech == nil && (errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)):
		return fmt.Errorf("%w (the broker closed the connection: does it require TLS (-kafka.tls) or SASL (-kafka.sasl-mechanism)?)", err)
	}
	return err
}
