package app

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/jobpixel/jobpixel/internal/devbroker"
)

// parse reads a command's flags and builds its logger (on stderr).
func parse(name string, args []string, stderr io.Writer) (Config, *slog.Logger, error) {
	var cfg Config
	fs := flag.NewFlagSet("jobpixel "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.Register(fs)
	if err := fs.Parse(args); err != nil {
		return cfg, nil, err
	}
	log, err := cfg.Logger(stderr)
	return cfg, log, err
}

// Serve runs the configured roles until ctx ends, then stops them in order.
// It logs to stderr as -log.format and -log.level say.
func Serve(ctx context.Context, args []string, stderr io.Writer) error {
	cfg, log, err := parse("serve", args, stderr)
	if err != nil {
		return err
	}
	a, err := Start(ctx, cfg, log)
	if err != nil {
		return err
	}
	if a.Demo != nil {
		a.PrintDemo(os.Stdout)
	}
	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case runErr = <-a.Err():
		log.Error("a role failed; shutting down", "err", runErr)
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := a.Stop(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped cleanly")
	return runErr
}

// PrintDemo writes what `make run` shows: the demo campaign's curl lines
// and the pages to open. It needs a.Demo.
func (a *App) PrintDemo(w io.Writer) {
	cfg := a.cfg
	in, api := "", ""
	if a.ingestLn != nil {
		in = "http://" + a.IngestAddr()
	}
	if a.apiLn != nil {
		api = "http://" + a.APIAddr()
	}
	ops := "(no -ops.addr)"
	if a.opsLn != nil {
		ops = "http://" + a.OpsAddr()
	}
	fmt.Fprintf(w, `
jobpixel is running (demo campaign %[1]s, credentials in %[4]s).

Send a hit (with a browser's user agent: curl's own counts as a bot):
  curl -s -o /dev/null -w '%%{http_code}\n' -A 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36' '%[2]s/p.gif?c=%[1]s&e=page_view&v=job-42&u=https%%3A%%2F%%2Fjobs.example.com%%2Fgo-engineer%%3Futm_source%%3Dnewsletter'

Read the report (today's hits appear within seconds):
  curl -s -H 'Authorization: Bearer %[3]s' '%[5]s/api/v1/campaigns/%[1]s/report'

Open the demo vacancy page (tracker script, consent banner, apply button):
  %[2]s/demo/vacancy?c=%[1]s

Open the client dashboard and paste the demo token (JOBPIXEL_DEMO_TOKEN in %[4]s):
  %[5]s/dashboard/

Metrics: %[6]s/metrics   Health: %[6]s/readyz   Stop: Ctrl-C
`, a.Demo.Campaign, in, a.Demo.Token, filepath.Join(cfg.DataDir, "demo.env"), api, ops)
}

// Migrate applies the ClickHouse migrations and exits.
func Migrate(ctx context.Context, args []string, stderr io.Writer) error {
	cfg, log, err := parse("migrate", args, stderr)
	if err != nil {
		return err
	}
	st, err := cfg.openStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	applied, err := st.Migrate(ctx)
	if err != nil {
		return err
	}
	log.Info("migrations applied", "versions", applied, "database", cfg.ClickHouseDatabase)
	return nil
}

// Broker runs a development Kafka broker until ctx ends. Its data survives
// a restart (a graceful one; see internal/devbroker).
func Broker(ctx context.Context, args []string, stderr io.Writer) error {
	cfg, log, err := parse("broker", args, stderr)
	if err != nil {
		return err
	}
	b, err := devbroker.Start(devbroker.Config{Dir: filepath.Join(cfg.DataDir, "kafka"), Port: cfg.BrokerPort,
		Topics: []string{cfg.KafkaTopic}, Partitions: int32(cfg.KafkaPartitions)})
	if err != nil {
		return err
	}
	log.Info("development broker listening", "addr", b.Addr())
	fmt.Fprintf(os.Stdout, "BROKER %s\n", b.Addr())
	<-ctx.Done()
	b.Close()
	return nil
}
