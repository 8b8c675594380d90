package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// startOps serves /metrics, /healthz and /readyz on cfg.MetricsAddr, for
// processes whose roles have no HTTP listener of their own (a pipeline-only
// replica): consumer lag, insert latency and errors are scraped here.
// /readyz checks ClickHouse and answers 503 once shutdown began.
func (a *App) startOps() error {
	mux := http.NewServeMux()
	a.opsRoutes(mux)
	ln, err := net.Listen("tcp", a.cfg.MetricsAddr)
	if err != nil {
		return fmt.Errorf("metrics: listen: %w", err)
	}
	a.opsLn = ln
	a.opsSrv = a.serveHTTP("metrics", ln, mux)
	return nil
}

// opsRoutes adds /metrics, /healthz and /readyz (ClickHouse reachable and
// no shutdown begun) to mux.
func (a *App) opsRoutes(mux *http.ServeMux) {
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if a.draining.Load() {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := a.st.Ping(ctx); err != nil {
			http.Error(w, "clickhouse: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
}

// serveHTTP serves h on ln with bounded timeouts and header size until
// shutdown; a serve error is a fatal error of the role called name.
func (a *App) serveHTTP(name string, ln net.Listener, h http.Handler) *http.Server {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 60 * time.Second, MaxHeaderBytes: 16 << 10}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.errc <- fmt.Errorf("%s: %w", name, err)
		}
	}()
	a.log.Info(name+" listening", "addr", ln.Addr().String())
	return srv
}

// MetricsAddr returns the address of the -metrics.addr listener, "" if none.
func (a *App) MetricsAddr() string {
	if a.opsLn == nil {
		return ""
	}
	return a.opsLn.Addr().String()
}
