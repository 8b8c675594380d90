package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/jobpixel/jobpixel/app"
)

// gif is the same 43-byte transparent GIF ingest answers.
var gif = []byte{
	0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0xff, 0xff, 0xff,
	0x00, 0x00, 0x00, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
	0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
}

// bareMain runs the baseline: a fasthttp server with ingest's server
// settings whose handler only answers the GIF, whatever the request.
func bareMain(args []string) error {
	fs := flag.NewFlagSet("bare", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			ctx.Response.Header.SetContentType("image/gif")
			ctx.Response.Header.Set("Cache-Control", "no-store")
			ctx.SetBody(gif)
		},
		Name:                  "bare",
		Concurrency:           16 * 1024,
		ReadBufferSize:        8 << 10,
		MaxRequestBodySize:    64 << 10,
		ReadTimeout:           10 * time.Second,
		WriteTimeout:          10 * time.Second,
		IdleTimeout:           60 * time.Second,
		NoDefaultServerHeader: true,
		NoDefaultDate:         true,
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		_ = srv.Shutdown()
	}()
	fmt.Printf("READY addr=%s\n", ln.Addr())
	return srv.Serve(ln)
}

// serveMain runs jobpixel exactly as `jobpixel serve` does (app.Start with
// the same flags) and prints its listeners' addresses on a READY line; the
// benchmark scrapes metrics and takes profiles on the ops listener.
func serveMain(args []string, log *slog.Logger) error {
	var cfg app.Config
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	cfg.Register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a, err := app.Start(ctx, cfg, log)
	if err != nil {
		return err
	}
	var ready []string
	for _, r := range strings.Split(cfg.Roles, ",") {
		switch strings.TrimSpace(r) {
		case "ingest":
			ready = append(ready, "ingest="+a.IngestAddr())
		case "api":
			ready = append(ready, "api="+a.APIAddr())
		}
	}
	if a.OpsAddr() != "" {
		ready = append(ready, "ops="+a.OpsAddr())
	}
	fmt.Printf("READY %s\n", strings.Join(ready, " "))
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-a.Err():
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := a.Stop(sctx); err != nil && runErr == nil {
		runErr = err
	}
	return runErr
}

// readyFields parses "k=v k=v" from a READY line.
func readyFields(s string) map[string]string {
	m := map[string]string{}
	for _, f := range strings.Fields(s) {
		if k, v, ok := strings.Cut(f, "="); ok {
			m[k] = v
		}
	}
	return m
}
