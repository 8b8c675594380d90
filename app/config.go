package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/jobpixel/jobpixel/anonymize"
	"github.com/jobpixel/jobpixel/instruction"
	"github.com/jobpixel/jobpixel/internal/kafkaconn"
	"github.com/jobpixel/jobpixel/internal/store"
	"github.com/jobpixel/jobpixel/internal/tlsconf"
)

// Config is the whole configuration of a jobpixel process. Every field is a
// flag with an environment override (JOBPIXEL_ + upper-cased flag name with
// "." and "-" as "_"); an explicit flag wins over the environment.
type Config struct {
	Roles   string
	DataDir string

	IngestAddr     string
	APIAddr        string
	TrustedProxies string
	QueueSize      int
	SpoolDir       string
	SpoolMaxBytes  int
	MaxBodyBytes   int
	GeoIPDB        string
	IPv4Bits       int
	IPv6Bits       int
	DenyParams     string
	MetaVendorID   int
	LinkedInVendor int

	KafkaBrokers    string
	KafkaTopic      string
	KafkaPartitions int
	KafkaGroup      string
	BrokerPort      int
	// KafkaTLS and KafkaSASL* reach a managed Kafka (kafkaConn).
	KafkaTLS           tlsconf.Options
	KafkaSASLMechanism string
	KafkaSASLUser      string
	KafkaSASLPassword  string

	ClickHouseAddr     string
	ClickHouseDatabase string
	ClickHouseUser     string
	ClickHousePassword string
	ClickHouseCluster  string
	ClickHouseTLS      tlsconf.Options
	LogFormat          string
	LogLevel           string

	BatchSize     int
	FlushInterval time.Duration

	Demo bool

	ShutdownTimeout time.Duration
	DrainDelay      time.Duration
	OpsAddr         string

	// Forwarding to ad platforms (role forward; see forward.go).
	SecretsKey              string
	ForwardAllowedHosts     string
	ForwardGroup            string
	ForwardRefresh          time.Duration
	ForwardAudienceInterval time.Duration
	ForwardMaxHold          time.Duration
	ForwardStopGrace        time.Duration
	ForwardMetaVersion      string
	ForwardLinkedInVersion  string
	ForwardAdsVersion       string
}

// envName maps a flag name to its environment variable.
func envName(flagName string) string {
	r := strings.NewReplacer(".", "_", "-", "_")
	return "JOBPIXEL_" + strings.ToUpper(r.Replace(flagName))
}

// Register declares the flags on fs. Defaults come from the environment
// when set there.
func (c *Config) Register(fs *flag.FlagSet) {
	boolean := func(p *bool, name string, def bool, help string) {
		if v, ok := os.LookupEnv(envName(name)); ok {
			if b, err := strconv.ParseBool(v); err == nil {
				def = b
			}
		}
		fs.BoolVar(p, name, def, help+" (env "+envName(name)+")")
	}
	str := func(p *string, name, def, help string) {
		if v, ok := os.LookupEnv(envName(name)); ok {
			def = v
		}
		fs.StringVar(p, name, def, help+" (env "+envName(name)+")")
	}
	num := func(p *int, name string, def int, help string) {
		if v, ok := os.LookupEnv(envName(name)); ok {
			if n, err := strconv.Atoi(v); err == nil {
				def = n
			}
		}
		fs.IntVar(p, name, def, help+" (env "+envName(name)+")")
	}
	dur := func(p *time.Duration, name string, def time.Duration, help string) {
		if v, ok := os.LookupEnv(envName(name)); ok {
			if d, err := time.ParseDuration(v); err == nil {
				def = d
			}
		}
		fs.DurationVar(p, name, def, help+" (env "+envName(name)+")")
	}
	str(&c.LogFormat, "log.format", "json", "log format: json (one JSON object a line, for log collectors) or text (for a terminal)")
	str(&c.LogLevel, "log.level", "info", "least severe level logged: debug, info, warn or error")
	str(&c.Roles, "roles", "ingest,pipeline,api", "comma-separated roles this process runs: ingest, pipeline, api, forward")
	str(&c.DataDir, "data-dir", ".data", "directory for local state (embedded broker data, demo.env)")
	str(&c.IngestAddr, "ingest.addr", "127.0.0.1:8080", "listen address of the hit endpoint (/p.gif, /e)")
	str(&c.APIAddr, "api.addr", "127.0.0.1:8081", "listen address of the client API")
	str(&c.TrustedProxies, "ingest.trusted-proxies", "", "comma-separated CIDRs whose X-Forwarded-For is trusted; empty trusts none")
	num(&c.QueueSize, "ingest.queue-size", 65536, "hits buffered in memory for Kafka")
	num(&c.MaxBodyBytes, "ingest.max-body", 64<<10, "largest accepted POST /e body in bytes")
	str(&c.SpoolDir, "ingest.spool-dir", "", "disk spool for hits while Kafka is down or slow, replayed when it is back (default DATA_DIR/spool)")
	num(&c.SpoolMaxBytes, "ingest.spool-max-bytes", 1<<30, "size cap of the disk spool in bytes; when it is full too, hits are shed (503, X-Jobpixel-Reject: spool_full)")
	num(&c.IPv4Bits, "anonymize.ipv4-bits", 24, "leading bits kept of IPv4 addresses (0-24; never more)")
	num(&c.IPv6Bits, "anonymize.ipv6-bits", 48, "leading bits kept of IPv6 addresses (0-48; never more)")
	str(&c.DenyParams, "anonymize.deny-params", "", "comma-separated query parameters removed from URLs and referrers, besides the built-in list")
	str(&c.GeoIPDB, "geoip.db", "", "path of a GeoIP2-layout City or Country .mmdb (see geo/README.md); empty disables GeoIP")
	num(&c.MetaVendorID, "consent.meta-vendor-id", 0, "TCF vendor id used for Meta; 0 = not a TCF vendor")
	num(&c.LinkedInVendor, "consent.linkedin-vendor-id", 0, "TCF vendor id used for LinkedIn; 0 = not a TCF vendor")
	str(&c.KafkaBrokers, "kafka.brokers", "", "comma-separated Kafka brokers; empty starts an embedded development broker")
	str(&c.KafkaTopic, "kafka.topic", "jobpixel.hits", "topic of accepted hits")
	num(&c.KafkaPartitions, "kafka.partitions", 6, "partitions of the topic on the embedded broker")
	str(&c.KafkaGroup, "kafka.group", "jobpixel-pipeline", "consumer group of the pipeline")
	boolean(&c.KafkaTLS.Enable, "kafka.tls", false, "connect to Kafka with TLS; implied by any -kafka.tls-* flag")
	str(&c.KafkaTLS.CAFile, "kafka.tls-ca", "", "PEM file of the CAs that may sign the brokers' certificates; empty: the system's roots")
	str(&c.KafkaTLS.CertFile, "kafka.tls-cert", "", "PEM client certificate for Kafka, if the brokers require one (with -kafka.tls-key)")
	str(&c.KafkaTLS.KeyFile, "kafka.tls-key", "", "PEM key of -kafka.tls-cert")
	str(&c.KafkaTLS.ServerName, "kafka.tls-server-name", "", "name checked against the brokers' certificates; empty: the host of each broker dialled")
	str(&c.KafkaSASLMechanism, "kafka.sasl-mechanism", "", "SASL mechanism: plain, scram-sha-256 or scram-sha-512; empty: no SASL")
	str(&c.KafkaSASLUser, "kafka.sasl-user", "", "SASL user (with -kafka.sasl-mechanism)")
	str(&c.KafkaSASLPassword, "kafka.sasl-password", "", "SASL password (no default; set it in the environment, not on a command line)")
	num(&c.BrokerPort, "broker.port", 19092, "port of the embedded development broker")
	str(&c.ClickHouseAddr, "clickhouse.addr", "127.0.0.1:19000", "ClickHouse native-protocol address")
	str(&c.ClickHouseDatabase, "clickhouse.database", "jobpixel", "ClickHouse database")
	str(&c.ClickHouseUser, "clickhouse.user", "default", "ClickHouse user")
	str(&c.ClickHousePassword, "clickhouse.password", "", "ClickHouse password (no default)")
	str(&c.ClickHouseCluster, "clickhouse.cluster", "", "ClickHouse cluster (a name in the servers' remote_servers) the schema is created on: replicated tables, ON CLUSTER DDL, traffic tables sharded by campaign behind Distributed tables (see README, Beyond one machine); empty: a single server")
	boolean(&c.ClickHouseTLS.Enable, "clickhouse.tls", false, "connect to ClickHouse with TLS (its secure native port, usually 9440); implied by any -clickhouse.tls-* flag")
	str(&c.ClickHouseTLS.CAFile, "clickhouse.tls-ca", "", "PEM file of the CAs that may sign ClickHouse's certificate; empty: the system's roots")
	str(&c.ClickHouseTLS.CertFile, "clickhouse.tls-cert", "", "PEM client certificate for ClickHouse, if it requires one (with -clickhouse.tls-key)")
	str(&c.ClickHouseTLS.KeyFile, "clickhouse.tls-key", "", "PEM key of -clickhouse.tls-cert")
	str(&c.ClickHouseTLS.ServerName, "clickhouse.tls-server-name", "", "name checked against ClickHouse's certificate; empty: the host of -clickhouse.addr")
	num(&c.BatchSize, "pipeline.batch-size", 50000, "most rows per ClickHouse insert")
	dur(&c.FlushInterval, "pipeline.flush-interval", 500*time.Millisecond, "longest a consumed hit waits for its insert")
	dur(&c.ShutdownTimeout, "shutdown-timeout", 20*time.Second, "deadline of a graceful shutdown")
	str(&c.SecretsKey, "secrets.key", "", "base64 of 32 random bytes sealing forwarding credentials with AES-256-GCM (no default: without it instructions carrying credentials are refused and the forward role does not start)")
	str(&c.ForwardAllowedHosts, "forward.allowed-hosts", instruction.DefaultAllowedHosts, "comma-separated hosts (host or host:port) forwarding may send to; an instruction naming another destination is refused")
	str(&c.ForwardGroup, "forward.group", "jobpixel-forward", "consumer-group prefix of the forward role (one group per platform: PREFIX-google, PREFIX-meta, PREFIX-linkedin)")
	dur(&c.ForwardRefresh, "forward.refresh", 2*time.Second, "how often the forwarder re-reads instructions (at most 5s): a revocation stops forwarding within it")
	dur(&c.ForwardAudienceInterval, "forward.audience-interval", 10*time.Second, "how often audiences are reconciled with their segments (additions, expiry and removals)")
	dur(&c.ForwardMaxHold, "forward.max-hold", 15*time.Minute, "how long retryable platform failures are retried before the items are dead-lettered")
	dur(&c.ForwardStopGrace, "forward.stop-grace", 10*time.Second, "on shutdown, how long in-flight platform requests may finish and be recorded")
	str(&c.ForwardMetaVersion, "forward.meta-version", "v25.0", "Meta Graph API version")
	str(&c.ForwardLinkedInVersion, "forward.linkedin-version", "202610", "LinkedIn-Version header (YYYYMM)")
	str(&c.ForwardAdsVersion, "forward.google-ads-version", "v22", "Google Ads API version")
	str(&c.OpsAddr, "ops.addr", "127.0.0.1:9464", "listen address of the ops endpoints /metrics, /healthz, /readyz and /debug/pprof/ (keep it private: loopback, or a port only the cluster reaches); empty: none")
	dur(&c.DrainDelay, "shutdown.drain-delay", 0, "on SIGTERM, how long /readyz answers 503 while hits are still served, before the listeners close (set it to the load balancer's probe period, e.g. 5s); counts against shutdown-timeout")
	if v, ok := os.LookupEnv(envName("demo")); ok {
		c.Demo = v == "1" || v == "true"
	}
	fs.BoolVar(&c.Demo, "demo", c.Demo, "create a demo client and campaign, write DATA_DIR/demo.env and serve the demo page under /demo/ (env JOBPIXEL_DEMO)")
}

// Logger returns the logger the -log.* flags ask for, writing to w.
func (c *Config) Logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return nil, fmt.Errorf("log.level: %q is none of debug, info, warn, error", c.LogLevel)
	}
	o := &slog.HandlerOptions{Level: level}
	switch c.LogFormat {
	case "json":
		return slog.New(slog.NewJSONHandler(w, o)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, o)), nil
	}
	return nil, fmt.Errorf("log.format: %q is neither json nor text", c.LogFormat)
}

// openStore connects to ClickHouse as the -clickhouse.* flags say.
func (c *Config) openStore(ctx context.Context) (*store.Store, error) {
	sc, err := c.storeConfig()
	if err != nil {
		return nil, err
	}
	st, err := store.Open(ctx, sc)
	if err != nil {
		return nil, clickhouseHint(err, sc.TLS != nil)
	}
	return st, nil
}

// openStoreOrLater is openStore for a process that may start while
// ClickHouse is down (ingest alone): when the server does not answer (a
// network error; refused credentials or a failed TLS handshake are still
// errors), it returns a store that connects on first use, and down says
// why it could not connect now.
func (c *Config) openStoreOrLater(ctx context.Context) (st *store.Store, down, err error) {
	st, err = c.openStore(ctx)
	var netErr *net.OpError
	if err == nil || !errors.As(err, &netErr) {
		return st, nil, err
	}
	sc, _ := c.storeConfig() // it worked above
	sc.Lazy = true
	if st, err = store.Open(ctx, sc); err != nil {
		return nil, nil, err
	}
	return st, netErr, nil
}

func (c *Config) storeConfig() (store.Config, error) {
	tc, err := c.ClickHouseTLS.Config()
	if err != nil {
		return store.Config{}, fmt.Errorf("clickhouse: %w", err)
	}
	return store.Config{Addr: c.ClickHouseAddr, Database: c.ClickHouseDatabase,
		User: c.ClickHouseUser, Password: c.ClickHousePassword, TLS: tc, Cluster: c.ClickHouseCluster}, nil
}

// clickhouseHint adds to a failed connection the flags that usually fix it.
func clickhouseHint(err error, useTLS bool) error {
	var ex *clickhouse.Exception
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var notTLS tls.RecordHeaderError
	msg := err.Error()
	switch {
	case errors.As(err, &ex) && (ex.Code == 193 || ex.Code == 194 || ex.Code == 516):
		return fmt.Errorf("%w (authentication failed: check -clickhouse.user and -clickhouse.password)", err)
	case errors.As(err, &unknownCA) || strings.Contains(msg, "certificate signed by unknown authority"):
		return fmt.Errorf("%w (ClickHouse's certificate is not signed by a trusted CA: check -clickhouse.tls-ca)", err)
	case errors.As(err, &hostname):
		return fmt.Errorf("%w (check -clickhouse.tls-server-name)", err)
	case errors.As(err, &notTLS) || strings.Contains(msg, "does not look like a TLS handshake"):
		return fmt.Errorf("%w (the port does not speak TLS: use the secure native port, usually 9440, or drop -clickhouse.tls)", err)
	case !useTLS && strings.Contains(msg, "handshake"):
		return fmt.Errorf("%w (the server closed the connection during the handshake: if this is the secure native port, set -clickhouse.tls)", err)
	}
	return err
}

// list splits a comma-separated flag value, trimming blanks and dropping
// empty items.
func list(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// roleSet is what -roles asks this process to run.
type roleSet struct{ ingest, pipeline, api, forward bool }

func (c *Config) roles() (roleSet, error) {
	var rs roleSet
	for _, r := range list(c.Roles) {
		switch r {
		case "ingest":
			rs.ingest = true
		case "pipeline":
			rs.pipeline = true
		case "api":
			rs.api = true
		case "forward":
			rs.forward = true
		default:
			return rs, fmt.Errorf("unknown role %q (want ingest, pipeline, api, forward)", r)
		}
	}
	if rs == (roleSet{}) {
		return rs, fmt.Errorf("no role given")
	}
	return rs, nil
}

// truncator is the validated -anonymize.ipv4-bits/-ipv6-bits setting.
func (c *Config) truncator() (anonymize.Truncator, error) {
	t, err := anonymize.NewTruncator(c.IPv4Bits, c.IPv6Bits)
	if err != nil {
		return t, fmt.Errorf("anonymize.ipv4-bits, anonymize.ipv6-bits: %w", err)
	}
	return t, nil
}

func (c *Config) trustedProxies() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list(c.TrustedProxies) {
		if !strings.Contains(s, "/") {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("ingest.trusted-proxies: %w", err)
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("ingest.trusted-proxies: %w", err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func (c *Config) brokers() []string { return list(c.KafkaBrokers) }

// kafkaConn returns the connection settings of every Kafka client of the
// process, as the -kafka.tls* and -kafka.sasl-* flags say. TLS or SASL
// without -kafka.brokers is an error: the embedded development broker
// speaks plain text only.
func (c *Config) kafkaConn() (*kafkaconn.Conn, error) {
	secured := c.KafkaTLS.Enabled() || c.KafkaSASLMechanism != "" || c.KafkaSASLUser != "" || c.KafkaSASLPassword != ""
	if secured && len(c.brokers()) == 0 {
		return nil, errors.New("kafka: -kafka.tls* and -kafka.sasl-* need -kafka.brokers (the embedded development broker speaks plain text)")
	}
	tc, err := c.KafkaTLS.Config()
	if err != nil {
		return nil, fmt.Errorf("kafka: %w (-kafka.tls-ca, -kafka.tls-cert, -kafka.tls-key)", err)
	}
	return kafkaconn.New(kafkaconn.Options{TLS: tc, SASLMechanism: c.KafkaSASLMechanism,
		User: c.KafkaSASLUser, Password: c.KafkaSASLPassword})
}

func (c *Config) denyParams() []string { return list(c.DenyParams) }
