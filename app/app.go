// Package app wires jobpixel's roles together: it is what cmd/jobpixel runs.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/segmentio/kafka-go"

	"github.com/jobpixel/jobpixel/anonymize"
	"github.com/jobpixel/jobpixel/api"
	"github.com/jobpixel/jobpixel/api/dashboard"
	"github.com/jobpixel/jobpixel/ingest"
	"github.com/jobpixel/jobpixel/internal/devbroker"
	"github.com/jobpixel/jobpixel/internal/kafkaconn"
	"github.com/jobpixel/jobpixel/internal/salt"
	"github.com/jobpixel/jobpixel/internal/store"
	"github.com/jobpixel/jobpixel/pipeline"
)

// App is a running jobpixel process.
type App struct {
	cfg Config
	log *slog.Logger
	reg *prometheus.Registry

	broker          *devbroker.Broker
	kafka           *kafkaconn.Conn // every Kafka client's TLS and SASL
	st              *store.Store
	writer          *kafka.Writer
	ingest          *ingest.Server
	ingestCampaigns *ingest.Registry
	ingestLn        net.Listener
	apiSrv          *http.Server
	apiLn           net.Listener
	opsSrv          *http.Server // -ops.addr
	opsLn           net.Listener

	pipeCancel context.CancelFunc
	fwdCancel  context.CancelFunc // forward role (forward.go)
	bgCancel   context.CancelFunc
	draining   atomic.Bool // readyz answers 503 (shutdown began)
	wg         sync.WaitGroup
	errc       chan error

	trunc anonymize.Truncator
	// ingestOnly: readiness does not depend on ClickHouse (ops.go).
	ingestOnly bool

	// Demo is set when Config.Demo created or reused the demo campaign.
	Demo *Demo
}

// Start starts every configured role and returns once they serve.
func Start(ctx context.Context, cfg Config, log *slog.Logger) (_ *App, err error) {
	roles, err := cfg.roles()
	if err != nil {
		return nil, err
	}
	trunc, err := cfg.truncator()
	if err != nil {
		return nil, err
	}
	a := &App{cfg: cfg, trunc: trunc, ingestOnly: roles == (roleSet{ingest: true}), log: log, reg: prometheus.NewRegistry(), errc: make(chan error, 4)}
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	defer func() {
		if err != nil {
			a.Stop(context.Background())
		}
	}()
	if a.kafka, err = cfg.kafkaConn(); err != nil {
		return nil, err
	}
	brokers := cfg.brokers()
	usesKafka := roles.ingest || roles.pipeline || roles.forward
	if usesKafka && len(brokers) > 0 {
		if err := a.checkKafka(ctx, brokers); err != nil {
			return nil, err
		}
	} else if usesKafka {
		a.broker, err = devbroker.Start(devbroker.Config{
			Dir: filepath.Join(cfg.DataDir, "kafka"), Port: cfg.BrokerPort,
			Topics: []string{cfg.KafkaTopic}, Partitions: int32(cfg.KafkaPartitions),
		})
		if err != nil {
			return nil, err
		}
		brokers = []string{a.broker.Addr()}
		log.Info("embedded development broker started (set JOBPIXEL_KAFKA_BROKERS for a real cluster)", "addr", a.broker.Addr())
	}
	// Ingest alone starts while ClickHouse is down (its campaigns come from
	// the snapshot, see startIngest); every other role needs it.
	var chDown error
	if a.ingestOnly {
		a.st, chDown, err = cfg.openStoreOrLater(ctx)
	} else {
		a.st, err = cfg.openStore(ctx)
	}
	if err != nil {
		return nil, err
	}
	if chDown != nil {
		log.Warn("ClickHouse unavailable: ingest starts with its campaign snapshot and connects when ClickHouse answers; migrations are left to the other roles", "err", chDown)
	} else {
		applied, err := a.st.Migrate(ctx)
		if err != nil {
			return nil, err
		}
		if len(applied) > 0 {
			log.Info("applied migrations", "versions", applied)
		}
	}
	if cfg.Demo {
		if a.Demo, err = EnsureDemo(ctx, a.st, cfg.DataDir); err != nil {
			return nil, err
		}
	}
	bgCtx, bgCancel := context.WithCancel(context.Background())
	a.bgCancel = bgCancel

	if roles.ingest {
		if err := a.startIngest(ctx, bgCtx, brokers); err != nil {
			return nil, err
		}
	}
	if roles.pipeline {
		p, err := pipeline.New(pipeline.Config{Brokers: brokers, Dialer: a.kafka.Dialer(), Topic: cfg.KafkaTopic, Group: cfg.KafkaGroup,
			BatchSize: cfg.BatchSize, FlushInterval: cfg.FlushInterval, Truncation: trunc}, a.st, log.With("role", "pipeline"), a.reg)
		if err != nil {
			return nil, err
		}
		pctx, cancel := context.WithCancel(context.Background())
		a.pipeCancel = cancel
		go a.retention(bgCtx, time.Hour)
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			if err := p.Run(pctx); err != nil {
				a.errc <- err
			}
		}()
	}
	if roles.forward {
		if err := a.startForward(brokers); err != nil {
			return nil, err
		}
	}
	if roles.api {
		if err := a.startAPI(); err != nil {
			return nil, err
		}
	}
	if cfg.OpsAddr != "" {
		if err := a.startOps(); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// checkKafkaTimeout bounds the start-up check of the brokers.
const checkKafkaTimeout = 15 * time.Second

// checkKafka connects to the brokers once at start. A misconfigured TLS or
// SASL connection fails the start with the cause and the flag to fix (no
// client would ever connect); brokers that are merely unreachable are a
// warning, since they may come back: the clients retry in the background
// and /readyz says "kafka unavailable" while ingest's writes fail.
func (a *App) checkKafka(ctx context.Context, brokers []string) error {
	if !a.cfg.KafkaTLS.Enabled() && strings.EqualFold(a.cfg.KafkaSASLMechanism, "plain") {
		a.log.Warn("SASL PLAIN without -kafka.tls sends the Kafka password in clear text")
	}
	cctx, cancel := context.WithTimeout(ctx, checkKafkaTimeout)
	defer cancel()
	err := a.kafka.Check(cctx, brokers)
	switch {
	case errors.Is(err, kafkaconn.Misconfigured):
		return err
	case err != nil:
		a.log.Warn("kafka unreachable at start; its clients keep retrying", "err", err)
	}
	return nil
}

func (a *App) startIngest(ctx, bgCtx context.Context, brokers []string) error {
	log := a.log.With("role", "ingest")
	reg := ingest.NewRegistry(a.st, log)
	a.ingestCampaigns = reg
	if err := reg.Load(ctx, filepath.Join(a.cfg.DataDir, "campaigns.json")); err != nil {
		// Serving, not ready (ingest.Server.Readiness), until a refresh
		// succeeds.
		log.Error("no campaigns: ClickHouse unavailable and no campaign snapshot; every hit is rejected until ClickHouse answers", "err", err)
	}
	keeper := salt.New(a.st, log)
	if err := keeper.Load(ctx); err != nil {
		// Hits are counted without a visitor id until the salt loads
		// (keeper.Run retries every minute).
		log.Warn("visitor salt unavailable: hits carry no visitor id until ClickHouse answers", "err", err)
	}
	go reg.Run(bgCtx, 5*time.Second)
	go keeper.Run(bgCtx, time.Minute)
	trusted, err := a.cfg.trustedProxies()
	if err != nil {
		return err
	}
	a.writer = &kafka.Writer{
		Addr:         kafka.TCP(brokers...),
		Transport:    a.kafka.Transport(),
		Topic:        a.cfg.KafkaTopic,
		Balancer:     &kafka.Hash{},
		BatchSize:    1000,
		BatchTimeout: 5 * time.Millisecond,
		RequiredAcks: kafka.RequireAll,
		// Snappy: as fast as lz4 here (shared/docs/kafka.md) without lz4's
		// 8 MB of encoder tables in every ingest process.
		Compression:  kafka.Snappy,
		MaxAttempts:  3,
		WriteTimeout: 10 * time.Second,
	}
	geoDB, err := openGeo(a.cfg.GeoIPDB)
	if err != nil {
		return err
	}
	spoolDir := a.cfg.SpoolDir
	if spoolDir == "" {
		spoolDir = filepath.Join(a.cfg.DataDir, "spool")
	}
	a.ingest, err = ingest.New(ingest.Config{
		TrustedProxies: trusted, QueueSize: a.cfg.QueueSize, MaxBodyBytes: a.cfg.MaxBodyBytes,
		SpoolDir: spoolDir, SpoolMaxBytes: int64(a.cfg.SpoolMaxBytes),
		MetaVendorID: a.cfg.MetaVendorID, LinkedInVendorID: a.cfg.LinkedInVendor,
		Truncation: a.trunc, DenyParams: a.cfg.denyParams(), Demo: a.cfg.Demo,
	}, ingest.Deps{Writer: a.writer, Campaigns: reg, Salts: keeper, Geo: geoDB, Log: log, Metrics: a.reg,
		KafkaProbe: kafkaProbe(a.kafka.Dialer(), brokers, a.cfg.KafkaTopic)})
	if err != nil {
		return err
	}
	a.ingestLn, err = net.Listen("tcp", a.cfg.IngestAddr)
	if err != nil {
		return fmt.Errorf("ingest: listen: %w", err)
	}
	a.ingest.Start()
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		if err := a.ingest.Serve(a.ingestLn); err != nil {
			a.errc <- err
		}
	}()
	log.Info("ingest listening", "addr", a.ingestLn.Addr().String())
	return nil
}

func (a *App) startAPI() error {
	srv := api.New(a.st, a.log.With("role", "api"))
	fwd, ferr := a.cfg.forwarding()
	if ferr != nil {
		return ferr
	}
	srv.SetForwarding(fwd)
	mux := http.NewServeMux()
	mux.Handle("/api/", srv.Handler())
	dash := dashboard.Handler() // the client dashboard: a page that reads /api/
	mux.Handle("/dashboard", dash)
	mux.Handle("/dashboard/", dash)
	var err error
	a.apiLn, err = net.Listen("tcp", a.cfg.APIAddr)
	if err != nil {
		return fmt.Errorf("api: listen: %w", err)
	}
	a.apiSrv = a.serveHTTP("api", a.apiLn, mux)
	return nil
}

// RefreshCampaigns reloads the campaigns ingest accepts from ClickHouse at
// once, instead of at the registry's next periodic refresh. It is a no-op
// without the ingest role.
func (a *App) RefreshCampaigns(ctx context.Context) error {
	if a.ingestCampaigns == nil {
		return nil
	}
	return a.ingestCampaigns.Refresh(ctx)
}

// IngestAddr and APIAddr return the bound addresses (useful with port 0).
func (a *App) IngestAddr() string { return a.ingestLn.Addr().String() }

// APIAddr returns the address the API listens on.
func (a *App) APIAddr() string { return a.apiLn.Addr().String() }

// Store returns the ClickHouse store.
func (a *App) Store() *store.Store { return a.st }

// Err delivers the first fatal error of a role.
func (a *App) Err() <-chan error { return a.errc }

// Stop shuts down in order, within ctx's deadline: ingest becomes not ready,
// stops accepting and flushes its queue to Kafka; the pipeline inserts and
// commits what it holds; the API finishes open requests; then the
// connections and the embedded broker close.
func (a *App) Stop(ctx context.Context) error {
	var errs []error
	// Not ready first; keep serving for the drain delay so load balancers
	// notice before the listeners close.
	a.draining.Store(true)
	if a.ingest != nil {
		a.ingest.Drain()
	}
	if d := a.cfg.DrainDelay; d > 0 && (a.ingest != nil || a.apiSrv != nil) {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	if a.ingest != nil {
		if err := a.ingest.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if a.writer != nil {
		// Close waits for writes a cancelled call left behind (Kafka down):
		// bounded by the deadline, their hits are in the spool anyway.
		closed := make(chan error, 1)
		go func() { closed <- a.writer.Close() }()
		select {
		case err := <-closed:
			if err != nil {
				errs = append(errs, fmt.Errorf("kafka writer: %w", err))
			}
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("kafka writer: close: %w", ctx.Err()))
		}
	}
	if a.pipeCancel != nil {
		a.pipeCancel()
	}
	if a.fwdCancel != nil {
		a.fwdCancel()
	}
	if a.apiSrv != nil {
		if err := a.apiSrv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("api: %w", err))
		}
	}
	if a.opsSrv != nil {
		if err := a.opsSrv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("metrics: %w", err))
		}
	}
	done := make(chan struct{})
	go func() { a.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("roles did not stop in time: %w", ctx.Err()))
	}
	if a.bgCancel != nil {
		a.bgCancel()
	}
	if a.st != nil {
		a.st.Close()
	}
	if a.broker != nil {
		a.broker.Close()
	}
	return errors.Join(errs...)
}

// retention enforces the retention promises every interval: visitor data of
// ended clients after two months, ended clients' records after five years.
func (a *App) retention(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		res, err := a.st.EnforceRetention(ctx, time.Now())
		if err != nil && ctx.Err() == nil {
			a.log.Error("retention run failed", "err", err)
		} else if len(res.PurgedVisitorData)+len(res.PurgedClients) > 0 {
			a.log.Info("retention purged data", "visitor_data_of", res.PurgedVisitorData, "client_records", res.PurgedClients)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
