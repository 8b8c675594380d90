package app

import (
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jobpixel/jobpixel/anonymize"
	"github.com/jobpixel/jobpixel/internal/store"
	"github.com/jobpixel/jobpixel/internal/testenv"
	"github.com/jobpixel/jobpixel/schemas"
)

// TestREADMEListsEveryFlag keeps the README's configuration table in step
// with the flags the binary really has.
func TestREADMEListsEveryFlag(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(testenv.Root(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg Config
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	cfg.Register(fs)
	fs.VisitAll(func(f *flag.Flag) {
		row := "| `-" + f.Name + "` | `" + envName(f.Name) + "` |"
		if !strings.Contains(string(readme), row) {
			t.Errorf("README configuration table lacks %s", row)
		}
	})
}

func TestEnvOverridesDefault(t *testing.T) {
	t.Setenv("JOBPIXEL_INGEST_QUEUE_SIZE", "123")
	t.Setenv("JOBPIXEL_KAFKA_BROKERS", "k1:9092,k2:9092")
	var cfg Config
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	cfg.Register(fs)
	if err := fs.Parse([]string{"-kafka.topic", "t"}); err != nil {
		t.Fatal(err)
	}
	if cfg.QueueSize != 123 || len(cfg.brokers()) != 2 || cfg.KafkaTopic != "t" {
		t.Fatalf("cfg = %+v", cfg)
	}
	// An explicit flag wins over the environment.
	cfg = Config{}
	fs = flag.NewFlagSet("x", flag.ContinueOnError)
	cfg.Register(fs)
	_ = fs.Parse([]string{"-ingest.queue-size", "7"})
	if cfg.QueueSize != 7 {
		t.Fatalf("flag did not win: %d", cfg.QueueSize)
	}
}

func TestRolesAndProxies(t *testing.T) {
	c := Config{Roles: "ingest, api"}
	rs, err := c.roles()
	if err != nil || rs != (roleSet{ingest: true, api: true}) {
		t.Fatalf("roles: %+v %v", rs, err)
	}
	if _, err := (&Config{Roles: "ingest,bogus"}).roles(); err == nil {
		t.Fatal("unknown role accepted")
	}
	c = Config{TrustedProxies: "10.0.0.0/8, 192.168.1.7,::1"}
	ps, err := c.trustedProxies()
	if err != nil || len(ps) != 3 || ps[1].Bits() != 32 {
		t.Fatalf("proxies %v %v", ps, err)
	}
	if _, err := (&Config{TrustedProxies: "nonsense"}).trustedProxies(); err == nil {
		t.Fatal("bad proxy accepted")
	}
}

// TestTruncationFlags: the anonymize flags can make truncation stronger,
// never weaker, and a weak one names the flag.
func TestTruncationFlags(t *testing.T) {
	for _, c := range []struct {
		v4, v6 int
		weak   bool
	}{{24, 48, false}, {16, 32, false}, {0, 0, false}, {25, 48, true}, {24, 64, true}, {-1, 48, true}} {
		tr, err := (&Config{IPv4Bits: c.v4, IPv6Bits: c.v6}).truncator()
		if c.weak {
			if err == nil || !strings.Contains(err.Error(), "anonymize.ipv4-bits") {
				t.Errorf("/%d, /%d: err %v, want one naming the flags", c.v4, c.v6, err)
			}
			continue
		}
		if v4, v6 := tr.Bits(); err != nil || v4 != c.v4 || v6 != c.v6 {
			t.Errorf("/%d, /%d: truncator keeps /%d, /%d, err %v", c.v4, c.v6, v4, v6, err)
		}
	}
	// Start refuses a weak setting before it starts anything.
	if _, err := Start(context.Background(), Config{Roles: "ingest", IPv4Bits: 32, IPv6Bits: 48}, slog.New(slog.DiscardHandler)); err == nil ||
		!errors.Is(err, anonymize.ErrWeakTruncation) {
		t.Fatalf("Start with -anonymize.ipv4-bits 32: %v", err)
	}
}

// TestKafkaConnFlags: the -kafka.tls* and -kafka.sasl-* flags (and their
// environment variables) build the Kafka connection, and each bad
// combination is refused at start, naming the flag.
func TestKafkaConnFlags(t *testing.T) {
	certs := testenv.MakeCerts(t)
	parse := func(args ...string) Config {
		t.Helper()
		var cfg Config
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		cfg.Register(fs)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	t.Setenv("JOBPIXEL_KAFKA_SASL_PASSWORD", "from-env")
	cfg := parse("-kafka.brokers", "k:9093", "-kafka.tls-ca", certs.CA, "-kafka.sasl-mechanism", "scram-sha-512", "-kafka.sasl-user", "u")
	if cfg.KafkaSASLPassword != "from-env" || !cfg.KafkaTLS.Enabled() {
		t.Fatalf("cfg = %+v", cfg)
	}
	if _, err := cfg.kafkaConn(); err != nil {
		t.Fatalf("TLS + SCRAM-SHA-512: %v", err)
	}
	t.Setenv("JOBPIXEL_KAFKA_SASL_PASSWORD", "")
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"TLS without brokers", []string{"-kafka.tls"}, "need -kafka.brokers"},
		{"SASL without brokers", []string{"-kafka.sasl-mechanism", "plain", "-kafka.sasl-user", "u", "-kafka.sasl-password", "p"}, "need -kafka.brokers"},
		{"unknown mechanism", []string{"-kafka.brokers", "k:9092", "-kafka.sasl-mechanism", "gssapi", "-kafka.sasl-user", "u", "-kafka.sasl-password", "p"}, "-kafka.sasl-mechanism"},
		{"mechanism without a password", []string{"-kafka.brokers", "k:9092", "-kafka.sasl-mechanism", "plain", "-kafka.sasl-user", "u"}, "-kafka.sasl-password"},
		{"user without a mechanism", []string{"-kafka.brokers", "k:9092", "-kafka.sasl-user", "u"}, "-kafka.sasl-mechanism"},
		{"certificate without a key", []string{"-kafka.brokers", "k:9092", "-kafka.tls-cert", certs.Cert}, "-kafka.tls-key"},
		{"missing CA file", []string{"-kafka.brokers", "k:9092", "-kafka.tls-ca", certs.CA + ".missing"}, "-kafka.tls-ca"},
	} {
		cfg := parse(c.args...)
		if _, err := cfg.kafkaConn(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", c.name, err, c.want)
		}
	}
}

// TestMigrateCommand: `jobpixel migrate` applies every migration once and is
// idempotent.
func TestMigrateCommand(t *testing.T) {
	db := "test_migrate_" + strings.ReplaceAll(t.Name(), "/", "_")
	args := []string{"-clickhouse.addr", testenv.ClickHouseAddr(t), "-clickhouse.database", db}
	log := io.Discard
	for range 2 {
		if err := Migrate(context.Background(), args, log); err != nil {
			t.Fatal(err)
		}
	}
	st, err := store.Open(context.Background(), store.Config{Addr: testenv.ClickHouseAddr(t), Database: db})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = st.Conn().Exec(context.Background(), "DROP DATABASE IF EXISTS "+db)
		st.Close()
	}()
	ms, _ := schemas.Migrations()
	var rows []struct {
		N uint64 `ch:"n"`
	}
	if err := st.Conn().Select(context.Background(), &rows, "SELECT count() AS n FROM schema_migrations"); err != nil {
		t.Fatal(err)
	}
	if rows[0].N != uint64(len(ms)) {
		t.Fatalf("schema_migrations holds %d rows, want %d (one per migration)", rows[0].N, len(ms))
	}
	if applied, err := st.Migrate(context.Background()); err != nil || len(applied) != 0 {
		t.Fatalf("third run applied %v, %v", applied, err)
	}
}

// TestMigrateOverTLS runs `jobpixel migrate` with the -clickhouse.tls-*
// flags against a ClickHouse 18.16 of the test's own that serves only TLS
// with a password: the right flags migrate; each wrong one fails with the
// flag to fix in the error.
func TestMigrateOverTLS(t *testing.T) {
	certs := testenv.MakeCerts(t)
	srv := testenv.StartServer(t, testenv.ServerOptions{Certs: &certs, Password: "pw-0f9"})
	log := io.Discard
	ctx := context.Background()
	args := func(extra ...string) []string {
		return append([]string{"-clickhouse.addr", srv.SecureAddr, "-clickhouse.database", "tls_migrate"}, extra...)
	}
	if err := Migrate(ctx, args("-clickhouse.tls-ca", certs.CA, "-clickhouse.password", "pw-0f9"), log); err != nil {
		t.Fatalf("migrate over TLS: %v", err)
	}
	t.Setenv("JOBPIXEL_CLICKHOUSE_PASSWORD", "pw-0f9")
	if err := Migrate(ctx, args("-clickhouse.tls-ca", certs.CA), log); err != nil {
		t.Fatalf("migrate with the password from the environment: %v", err)
	}
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"wrong password", args("-clickhouse.tls-ca", certs.CA, "-clickhouse.password", "nope"), "-clickhouse.password"},
		{"system roots only", args("-clickhouse.tls"), "-clickhouse.tls-ca"},
		{"no TLS to the secure port", args("-clickhouse.tls=false"), "set -clickhouse.tls"},
		{"TLS to the plain port", []string{"-clickhouse.addr", srv.Addr, "-clickhouse.tls-ca", certs.CA}, "does not speak TLS"},
		{"missing CA file", args("-clickhouse.tls-ca", certs.CA+".missing"), "tls: read CA file"},
		{"wrong server name", args("-clickhouse.tls-ca", certs.CA, "-clickhouse.tls-server-name", "clickhouse.example"), "-clickhouse.tls-server-name"},
	} {
		err := Migrate(ctx, c.args, log)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want it to contain %q", c.name, err, c.want)
		}
	}
}

func TestLogger(t *testing.T) {
	var buf strings.Builder
	c := Config{LogFormat: "json", LogLevel: "warn"}
	log, err := c.Logger(&buf)
	if err != nil {
		t.Fatal(err)
	}
	log.Info("hidden")
	log.Warn("shown", "k", 1)
	if got := buf.String(); strings.Contains(got, "hidden") || !strings.HasPrefix(got, "{") || !strings.Contains(got, `"msg":"shown"`) {
		t.Fatalf("json at warn logged %q", got)
	}
	buf.Reset()
	c = Config{LogFormat: "text", LogLevel: "debug"}
	if log, err = c.Logger(&buf); err != nil {
		t.Fatal(err)
	}
	log.Debug("dbg")
	if got := buf.String(); !strings.Contains(got, "msg=dbg") {
		t.Fatalf("text at debug logged %q", got)
	}
	for _, c := range []Config{{LogFormat: "xml", LogLevel: "info"}, {LogFormat: "json", LogLevel: "loud"}} {
		if _, err := c.Logger(&buf); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}
