package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// startOps serves the ops endpoints on cfg.OpsAddr, apart from the public
// ingest and api listeners: /metrics, /healthz (the process runs),
// /readyz (see ready) and net/http/pprof under /debug/pprof/.
func (a *App) startOps() error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if why := a.ready(ctx); why != "" {
			http.Error(w, "not ready: "+why, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	ln, err := net.Listen("tcp", a.cfg.OpsAddr)
	if err != nil {
		return fmt.Errorf("ops: listen (-ops.addr): %w", err)
	}
	a.opsLn = ln
	a.opsSrv = a.serveHTTP("ops", ln, mux)
	return nil
}

// ready says why the process should get no traffic, "" when it should:
// shutdown begun (from the drain on), the ingest role not ready (no
// campaigns known, Kafka not taking writes, the spool replaying:
// ingest.Server.Readiness), or ClickHouse not answering — except for ingest
// alone, which serves without ClickHouse.
func (a *App) ready(ctx context.Context) string {
	if a.draining.Load() {
		return "shutting down"
	}
	if a.ingest != nil {
		if ok, why := a.ingest.Readiness(); !ok {
			return "ingest: " + why
		}
	}
	if a.ingestOnly {
		return ""
	}
	if err := a.st.Ping(ctx); err != nil {
		return "clickhouse: " + err.Error()
	}
	return ""
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

// OpsAddr returns the address of the -ops.addr listener, "" if none.
func (a *App) OpsAddr() string {
	if a.opsLn == nil {
		return ""
	}
	return a.opsLn.Addr().String()
}
