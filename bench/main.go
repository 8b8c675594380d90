// Command bench measures jobpixel on the machine it runs on, side by side
// with baselines, and writes the figures to bench/results/ as Markdown and
// JSON. `make bench` runs it; bench/README.md explains every figure.
//
//	jobpixel-bench [run] [flags]     the whole benchmark (what `make bench` runs)
//
// The other subcommands are the child processes run starts, each pinned to a
// core with taskset:
//
//	jobpixel-bench load ...             HTTP load generator (fasthttp client)
//	jobpixel-bench bare ...             bare fasthttp server answering the GIF
//	jobpixel-bench serve ...            jobpixel's app.Start plus a pprof listener
//	jobpixel-bench pipeline-worker ...  the real pipeline or the raw baseline
package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	args := os.Args[1:]
	cmd := "run"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "run":
		err = runMain(args, log)
	case "load":
		err = loadMain(args)
	case "bare":
		err = bareMain(args)
	case "serve":
		err = serveMain(args, log)
	case "pipeline-worker":
		err = pipelineWorkerMain(args, log)
	default:
		err = fmt.Errorf("unknown command %q (want run, load, bare, serve or pipeline-worker)", cmd)
	}
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(os.Stderr, "jobpixel-bench %s: %v\n", cmd, err)
		os.Exit(1)
	}
}
