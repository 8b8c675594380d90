package kafkaconn_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/jobpixel/jobpixel/internal/kafkaconn"
	"github.com/jobpixel/jobpixel/internal/testenv"
	"github.com/jobpixel/jobpixel/internal/tlsconf"
)

// broker starts a broker with topic "hits", the given TLS and SASL superuser.
func broker(t *testing.T, certs *testenv.Certs, mech, user, pass string) string {
	t.Helper()
	return testenv.BrokerWith(t, "hits", 2, testenv.BrokerOptions{Certs: certs, SASLMechanism: mech, User: user, Password: pass})
}

// TestRoundTrip produces and consumes through Conn's Transport and Dialer
// against kfake with each combination a managed Kafka offers.
func TestRoundTrip(t *testing.T) {
	certs := testenv.MakeCerts(t)
	clientTLS, err := tlsconf.Options{CAFile: certs.CA}.Config()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		tls  bool
		mech string
	}{
		{"plain", false, ""},
		{"TLS", true, ""},
		{"SASL PLAIN", false, "PLAIN"},
		{"TLS + PLAIN", true, "PLAIN"},
		{"TLS + SCRAM-SHA-256", true, "SCRAM-SHA-256"},
		{"TLS + SCRAM-SHA-512", true, "SCRAM-SHA-512"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var srvCerts *testenv.Certs
			o := kafkaconn.Options{SASLMechanism: c.mech}
			if c.tls {
				srvCerts, o.TLS = &certs, clientTLS
			}
			if c.mech != "" {
				o.User, o.Password = "jobpixel", "k4fka-pw"
			}
			addr := broker(t, srvCerts, c.mech, "jobpixel", "k4fka-pw")
			conn, err := kafkaconn.New(o)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := conn.Check(ctx, []string{addr}); err != nil {
				t.Fatalf("check: %v", err)
			}
			w := &kafka.Writer{Addr: kafka.TCP(addr), Topic: "hits", Transport: conn.Transport(), BatchTimeout: 10 * time.Millisecond, RequiredAcks: kafka.RequireAll}
			defer w.Close()
			if err := w.WriteMessages(ctx, kafka.Message{Value: []byte("one")}, kafka.Message{Value: []byte("two")}); err != nil {
				t.Fatalf("produce: %v", err)
			}
			r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{addr}, GroupID: "g", Topic: "hits", Dialer: conn.Dialer(), MaxWait: 100 * time.Millisecond})
			defer r.Close()
			got := map[string]bool{}
			for len(got) < 2 {
				m, err := r.FetchMessage(ctx)
				if err != nil {
					t.Fatalf("consume: %v", err)
				}
				got[string(m.Value)] = true
				if err := r.CommitMessages(ctx, m); err != nil {
					t.Fatalf("commit: %v", err)
				}
			}
		})
	}
}

// TestCheckExplains: each misconfiguration fails Check at once (no retry
// loop) with the cause named, as Misconfigured; a broker that is down is
// not Misconfigured, with or without TLS and SASL.
func TestCheckExplains(t *testing.T) {
	certs := testenv.MakeCerts(t)
	goodTLS, _ := tlsconf.Options{CAFile: certs.CA}.Config()
	otherTLS, _ := tlsconf.Options{CAFile: testenv.MakeCerts(t).CA}.Config()
	saslTLS := broker(t, &certs, "SCRAM-SHA-256", "jobpixel", "right")
	plainBroker := broker(t, nil, "", "", "")
	down := testenv.DownAddr(t)
	for _, c := range []struct {
		name, addr    string
		o             kafkaconn.Options
		want          string
		misconfigured bool
	}{
		{"wrong password", saslTLS, kafkaconn.Options{TLS: goodTLS, SASLMechanism: "SCRAM-SHA-256", User: "jobpixel", Password: "wrong"}, `SASL SCRAM-SHA-256 as "jobpixel" failed`, true},
		{"wrong mechanism", saslTLS, kafkaconn.Options{TLS: goodTLS, SASLMechanism: "SCRAM-SHA-512", User: "jobpixel", Password: "right"}, "does not offer this mechanism", true},
		{"no SASL", saslTLS, kafkaconn.Options{TLS: goodTLS}, "-kafka.sasl-mechanism", true},
		{"untrusted certificate", saslTLS, kafkaconn.Options{TLS: otherTLS, SASLMechanism: "SCRAM-SHA-256", User: "jobpixel", Password: "right"}, "-kafka.tls-ca", true},
		{"TLS to a plain listener", plainBroker, kafkaconn.Options{TLS: goodTLS}, "does the broker speak TLS", true},
		{"broker down is not Misconfigured", down, kafkaconn.Options{}, "connection refused", false},
		{"broker down with TLS and SASL is not Misconfigured", down, kafkaconn.Options{TLS: goodTLS, SASLMechanism: "SCRAM-SHA-256", User: "jobpixel", Password: "right"}, "connection refused", false},
	} {
		conn, err := kafkaconn.New(c.o)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		start := time.Now()
		err = conn.Check(ctx, []string{c.addr})
		cancel()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", c.name, err, c.want)
		}
		if got := errors.Is(err, kafkaconn.Misconfigured); got != c.misconfigured {
			t.Errorf("%s: errors.Is(err, Misconfigured) = %v, want %v (err: %v)", c.name, got, c.misconfigured, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: Check took %v: it must fail at once, not retry", c.name, d)
		}
	}
	for _, o := range []kafkaconn.Options{
		{SASLMechanism: "GSSAPI", User: "u"},
		{SASLMechanism: "PLAIN"},
		{SASLMechanism: "SCRAM-SHA-256", User: "u"},
		{User: "u", Password: "p"},
	} {
		if _, err := kafkaconn.New(o); err == nil {
			t.Errorf("New(%+v) accepted", o)
		}
	}
}
