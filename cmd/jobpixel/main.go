// Command jobpixel runs the tracking-pixel server.
//
//	jobpixel [serve] [flags]   run the roles in -roles (default: all)
//	jobpixel migrate [flags]   apply ClickHouse migrations and exit
//	jobpixel broker [flags]    run a development Kafka broker (kfake)
//	jobpixel clients create -name N | end -id ID   operator commands on client accounts
//
// Every flag has an environment override; see -help and the README.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/jobpixel/jobpixel/app"
)

func main() {
	args := os.Args[1:]
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch cmd {
	case "serve":
		err = app.Serve(ctx, args, os.Stderr)
	case "migrate":
		err = app.Migrate(ctx, args, os.Stderr)
	case "broker":
		err = app.Broker(ctx, args, os.Stderr)
	case "clients":
		err = app.Clients(ctx, args, os.Stdout)
	default:
		err = fmt.Errorf("unknown command %q (want serve, migrate, broker or clients)", cmd)
	}
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(os.Stderr, "jobpixel %s: %v\n", cmd, err)
		os.Exit(1)
	}
}
