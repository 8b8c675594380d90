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
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jobpixel/jobpixel/anonymize"
	"github.com/valyala/fasthttp"
)

// Config configures the ingest server. Zero values take the defaults named
// on each field.
type Config struct {
	// TrustedProxies are the peers whose X-Forwarded-For is believed.
	TrustedProxies []netip.Prefix
	// QueueSize bounds the hits waiting for Kafka (default 65,536).
	QueueSize int
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
	// IPv4Bits and IPv6Bits are the prefix lengths kept of addresses that
	// may not travel in full (default 24 and 48; never more).
	IPv4Bits, IPv6Bits int
	// Vendors are the TCF vendor ids of the ad platforms besides Google's
	// (755); 0 means the platform is not a TCF vendor.
	MetaVendorID, LinkedInVendorID int
}

func (c *Config) setDefaults() error {
	if c.QueueSize <= 0 {
		c.QueueSize = 65536
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
	if c.IPv4Bits == 0 {
		c.IPv4Bits = 24
	}
	if c.IPv6Bits == 0 {
		c.IPv6Bits = 48
	}
	if c.IPv4Bits < 0 || c.IPv4Bits > 24 || c.IPv6Bits < 0 || c.IPv6Bits > 48 {
		return fmt.Errorf("ingest: IP truncation /%d (v4) /%d (v6) is weaker than the minimum /24 and /48", c.IPv4Bits, c.IPv6Bits)
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
}

// Salts gives the current day's visitor salt; *salt.Keeper implements it.
type Salts interface {
	Current(now time.Time) *[32]byte
}

// Server is the ingest endpoint.
type Server struct {
	cfg   Config
	deps  Deps
	q     *queue
	m     *metrics
	ids   idSource
	ready atomic.Bool

	stopProducers chan struct{}
	producersDone sync.WaitGroup
	urlStrict     anonymize.URLOptions
	urlAds        anonymize.URLOptions
	prodCtx       context.Context
	prodCancel    context.CancelFunc
	srv           *fasthttp.Server
}

// New returns a server; call Start to run the producers, then Serve.
func New(cfg Config, deps Deps) (*Server, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if deps.Writer == nil || deps.Campaigns == nil || deps.Salts == nil || deps.Log == nil {
		return nil, errors.New("ingest: writer, campaigns, salts and log are required")
	}
	s := &Server{cfg: cfg, deps: deps, q: newQueue(cfg.QueueSize), stopProducers: make(chan struct{})}
	s.urlAds.KeepClickIDs = true
	if _, err := rand.Read(s.ids.prefix[:]); err != nil {
		return nil, fmt.Errorf("ingest: id prefix: %w", err)
	}
	var reg prometheus.Registerer
	if deps.Metrics != nil {
		reg = deps.Metrics
	}
	s.m = newMetrics(reg, func() float64 { return float64(s.q.len()) })
	s.srv = &fasthttp.Server{
		Handler:                       s.Handler(),
		Name:                          "jobpixel",
		Concurrency:                   16 * 1024,
		ReadBufferSize:                8 << 10, // bounds request line + headers
		MaxRequestBodySize:            cfg.MaxBodyBytes,
		ReadTimeout:                   10 * time.Second,
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

// Start runs the Kafka producers. They stop in Shutdown.
func (s *Server) Start() {
	s.prodCtx, s.prodCancel = context.WithCancel(context.Background())
	ctx := s.prodCtx
	for i := 0; i < s.cfg.Producers; i++ {
		p := &producer{q: s.q, w: s.deps.Writer, batch: s.cfg.BatchSize, linger: s.cfg.Linger,
			log: s.deps.Log, m: s.m, backoff: expBackoff}
		s.producersDone.Add(1)
		go func() {
			defer s.producersDone.Done()
			p.run(ctx, s.stopProducers)
		}()
	}
	s.ready.Store(true)
}

// Serve accepts connections on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	if err := s.srv.Serve(ln); err != nil {
		return fmt.Errorf("ingest: serve: %w", err)
	}
	return nil
}

// Ready reports whether the server accepts hits.
func (s *Server) Ready() bool { return s.ready.Load() }

// Shutdown stops accepting hits and flushes the queue to Kafka within
// ctx's deadline: not ready → stop the listener and finish open requests →
// drain the queue → return.
func (s *Server) Shutdown(ctx context.Context) error {
	s.ready.Store(false)
	err := s.srv.ShutdownWithContext(ctx)
	close(s.stopProducers)
	done := make(chan struct{})
	go func() { s.producersDone.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.prodCancel() // producers give up their last batch and count it
		<-done
		return fmt.Errorf("ingest: shutdown: Kafka did not take every hit in time: %w", ctx.Err())
	}
	s.prodCancel()
	if err != nil {
		return fmt.Errorf("ingest: shutdown: %w", err)
	}
	return nil
}

// transportError answers requests fasthttp could not read: 413 for bodies
// over MaxBodyBytes, 400 otherwise, in the same JSON shape as /e errors.
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
