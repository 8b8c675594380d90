// Package ingest is the hit endpoint: a fasthttp server that answers at
// once, resolves consent and anonymises at the edge, and hands hits to a
// bounded queue drained into Kafka by producer goroutines. A request never
// waits on Kafka or ClickHouse.
package ingest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jobpixel/jobpixel/anonymize"
	"github.com/jobpixel/jobpixel/consent"
	"github.com/valyala/fasthttp"
)

// Config configures the ingest server. Zero values take the defaults named
// on each field.
type Config struct {
	// TrustedProxies are the peers whose X-Forwarded-For is believed.
	TrustedProxies []netip.Prefix
	// QueueSize bounds the hits waiting for Kafka (default 65,536).
	QueueSize int
	// SpoolDir is the disk spool taking hits Kafka cannot take (Kafka down,
	// slow, or the queue above SpoolHighWater); empty disables it, and
	// failed writes are then retried in memory. SpoolMaxBytes caps it
	// (default 1 GiB); SpoolHighWater is the queue depth above which hits
	// are spooled while the producers wait on Kafka (default QueueSize/2).
	SpoolDir       string
	SpoolMaxBytes  int64
	SpoolHighWater int
	// ReadTimeout bounds reading one request, headers and body (default
	// 10 s): a slow client is cut off after it.
	ReadTimeout time.Duration
	// Producers is the number of goroutines writing to Kafka (default 4);
	// BatchSize the most messages per write (default 1,000); Linger how
	// long a producer waits to fill a batch (default 5 ms).
	Producers int
	BatchSize int
	Linger    time.Duration
	// MaxBodyBytes bounds POST /e bodies (default 64 KiB); MaxBatch the
	// events in one body (default 100).
	MaxBodyBytes int
	MaxBatch     int
	// Truncation is applied to addresses that may not travel in full (the
	// zero value keeps /24 and /48, the most it can).
	Truncation anonymize.Truncator
	// DenyParams are query parameter names removed from page URLs and
	// referrers in addition to anonymize.URL's built-in list.
	DenyParams []string
	// Demo serves the demo vacancy page and its consent banner (/demo/).
	Demo bool
	// MetaVendorID and LinkedInVendorID are those platforms' TCF vendor ids
	// (Google's is always 755); 0 means the platform is not a TCF vendor.
	MetaVendorID, LinkedInVendorID int
}

func (c *Config) setDefaults() error {
	if c.QueueSize <= 0 {
		c.QueueSize = 65536
	}
	if c.SpoolHighWater <= 0 || c.SpoolHighWater >= c.QueueSize {
		c.SpoolHighWater = c.QueueSize / 2
	}
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = 10 * time.Second
	}
	if c.Producers <= 0 {
		c.Producers = 4
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 1000
	}
	if c.Linger <= 0 {
		c.Linger = 5 * time.Millisecond
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 64 << 10
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = 100
	}
	if c.MetaVendorID < 0 || c.MetaVendorID > 65535 || c.LinkedInVendorID < 0 || c.LinkedInVendorID > 65535 {
		return fmt.Errorf("ingest: TCF vendor ids must be 0..65535")
	}
	return nil
}

// Deps are the collaborators of the server.
type Deps struct {
	Writer    Writer    // Kafka
	Campaigns *Registry // campaign → client
	Salts     Salts     // daily visitor salt
	Geo       Geo       // may be nil
	Log       *slog.Logger
	Metrics   *prometheus.Registry // may be nil
	// KafkaProbe, if set, tells whether Kafka answers; it is called while
	// Kafka is marked down and nothing is spooled, to become ready again.
	KafkaProbe func(ctx context.Context) error
}

// Salts gives the current day's visitor salt; *salt.Keeper implements it.
type Salts interface {
	Current(now time.Time) *[32]byte
}

// Server is the ingest endpoint: HTTP, validation and enrichment. What
// happens to an accepted hit is its delivery's (delivery.go).
type Server struct {
	cfg      Config
	deps     Deps
	dl       *delivery
	m        *metrics
	ids      idSource
	ready    atomic.Bool // between Start and Shutdown
	draining atomic.Bool // Readiness is false

	vendors   consent.Vendors
	urlStrict anonymize.URLOptions
	urlAds    anonymize.URLOptions
	srv       *fasthttp.Server
}

// New returns a server; call Start to run the producers, then Serve.
func New(cfg Config, deps Deps) (*Server, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if deps.Writer == nil || deps.Campaigns == nil || deps.Salts == nil || deps.Log == nil {
		return nil, errors.New("ingest: writer, campaigns, salts and log are required")
	}
	s := &Server{cfg: cfg, deps: deps}
	s.urlAds.KeepClickIDs = true
	s.urlStrict.Deny, s.urlAds.Deny = cfg.DenyParams, cfg.DenyParams
	s.vendors = consent.Vendors{Meta: uint16(cfg.MetaVendorID), LinkedIn: uint16(cfg.LinkedInVendorID)}
	if _, err := rand.Read(s.ids.prefix[:]); err != nil {
		return nil, fmt.Errorf("ingest: id prefix: %w", err)
	}
	var reg prometheus.Registerer
	if deps.Metrics != nil {
		reg = deps.Metrics
	}
	s.m = newMetrics(reg)
	var err error
	if s.dl, err = newDelivery(&cfg, &deps, reg); err != nil {
		return nil, err
	}
	s.srv = &fasthttp.Server{
		Handler:        s.Handler(),
		Name:           "jobpixel",
		Concurrency:    16 * 1024,
		ReadBufferSize: 8 << 10, // bounds request line + headers
		// Bodies up to twice the limit are read and answered 413 by the
		// handler; fasthttp refuses larger ones unread and closes, which a
		// client still writing sees as a reset instead of the 413.
		MaxRequestBodySize:            2 * cfg.MaxBodyBytes,
		ReadTimeout:                   cfg.ReadTimeout,
		WriteTimeout:                  10 * time.Second,
		IdleTimeout:                   60 * time.Second,
		NoDefaultServerHeader:         true,
		NoDefaultDate:                 true,
		DisableHeaderNamesNormalizing: false,
		ReduceMemoryUsage:             false,
		ErrorHandler:                  s.transportError,
		Logger:                        quietLogger{},
	}
	return s, nil
}

// Start runs the delivery to Kafka (producers and, with a spool, its
// spiller and replayer); it stops in Shutdown.
func (s *Server) Start() {
	s.dl.start()
	s.ready.Store(true)
}

// Serve accepts connections on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	if err := s.srv.Serve(ln); err != nil {
		return fmt.Errorf("ingest: serve: %w", err)
	}
	return nil
}

// Drain makes Readiness false while hits are still accepted, so load
// balancers stop sending them before Shutdown (the drain delay).
func (s *Server) Drain() { s.draining.Store(true) }

// Shutdown stops accepting hits and flushes the queue within ctx's
// deadline: not ready → stop the listener and finish open requests (at most
// half the time left) → drain the queue to Kafka, or to the spool when Kafka
// fails or the deadline nears → close the spool → return.
func (s *Server) Shutdown(ctx context.Context) error {
	s.Drain()
	s.ready.Store(false)
	hctx := ctx
	if dl, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		hctx, cancel = context.WithDeadline(ctx, time.Now().Add(time.Until(dl)/2))
		defer cancel()
	}
	err := s.srv.ShutdownWithContext(hctx)
	if err != nil {
		err = fmt.Errorf("ingest: shutdown: %w", err)
	}
	return errors.Join(err, s.dl.stop(ctx))
}

// Readiness says whether a load balancer should send hits here, and why
// not: false while shutting down (from Drain on), while no campaign is
// known (neither the campaign source nor a snapshot answered), while Kafka
// does not take writes, and while the spool is being replayed. ClickHouse
// being down does not make ingest unready once campaigns are known.
func (s *Server) Readiness() (ok bool, why string) {
	if s.draining.Load() || !s.ready.Load() {
		return false, "shutting down"
	}
	if !s.deps.Campaigns.Known() {
		return false, "campaigns unknown: ClickHouse unavailable and no campaign snapshot"
	}
	return s.dl.health()
}

// transportError answers requests fasthttp could not read: 413 for bodies
// over twice MaxBodyBytes (smaller ones over the limit are the handler's
// 413), 408 on a read time-out, 400 otherwise, in the same JSON shape as /e
// errors.
func (s *Server) transportError(ctx *fasthttp.RequestCtx, err error) {
	ctx.Response.Header.Set("Access-Control-Allow-Origin", "*")
	if errors.Is(err, fasthttp.ErrBodyTooLarge) {
		jsonError(ctx, fasthttp.StatusRequestEntityTooLarge, "", fmt.Sprintf("body larger than %d bytes", s.cfg.MaxBodyBytes))
		return
	}
	var te interface{ Timeout() bool }
	if errors.As(err, &te) && te.Timeout() {
		jsonError(ctx, fasthttp.StatusRequestTimeout, "", "request timed out")
		return
	}
	jsonError(ctx, fasthttp.StatusBadRequest, "", "malformed request")
}

// quietLogger drops fasthttp's per-connection error lines; the
// ErrorHandler already answers them and metrics count them.
type quietLogger struct{}

func (quietLogger) Printf(string, ...any) {}
