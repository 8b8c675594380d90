package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// The micro-benchmarks are the packages' own `go test -bench` benchmarks,
// equivalent to
//
//	go test -run x -bench . -benchmem ./ingest ./schemas ./anonymize ./consent
//
// with -count and -benchtime set by the mode. Each package's test binary is
// built first (on every CPU) and then run pinned to the server CPUs, from
// the package directory.

type microBench struct {
	Package     string  `json:"package"`
	Name        string  `json:"name"`
	NsPerOp     figure  `json:"ns_per_op"`
	BytesPerOp  float64 `json:"bytes_per_op"`  // median
	AllocsPerOp float64 `json:"allocs_per_op"` // median
}

type microPackage struct {
	Package string `json:"package"`
	Command string `json:"command"`
	Output  string `json:"output"`
	Skipped string `json:"skipped,omitempty"`
	Err     string `json:"error,omitempty"`
}

type microResult struct {
	Packages   []microPackage `json:"packages"`
	Benchmarks []microBench   `json:"benchmarks"`
}

var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+(\d+)\s+([\d.]+) ns/op(.*)$`)

func (e *env) micro(ctx context.Context) error {
	r := &microResult{}
	e.res.Micro = r
	var failed []string
	for _, pkg := range e.o.MicroPackages {
		pkg = strings.TrimSpace(pkg)
		mp := microPackage{Package: "./" + pkg}
		goFiles, _ := filepath.Glob(filepath.Join(pkg, "*.go"))
		if len(goFiles) == 0 {
			mp.Skipped = "no Go files in ./" + pkg + " yet"
			r.Packages = append(r.Packages, mp)
			continue
		}
		bin := filepath.Join(e.runDir, strings.ReplaceAll(pkg, "/", "_")+".test")
		build := exec.CommandContext(ctx, e.goBin, "test", "-c", "-o", bin, "./"+pkg)
		if e.o.Pin {
			build = exec.CommandContext(ctx, "taskset", "-c", e.allCPUs(), e.goBin, "test", "-c", "-o", bin, "./"+pkg)
		}
		if out, err := build.CombinedOutput(); err != nil {
			mp.Err = fmt.Sprintf("build: %v", err)
			mp.Output = string(out)
			r.Packages = append(r.Packages, mp)
			failed = append(failed, pkg)
			continue
		}
		if _, err := os.Stat(bin); err != nil {
			mp.Skipped = "no test files"
			r.Packages = append(r.Packages, mp)
			continue
		}
		args := []string{bin, "-test.run", "^$", "-test.bench", ".", "-test.benchmem",
			"-test.count", strconv.Itoa(e.o.MicroCount), "-test.benchtime", e.o.MicroBenchtime}
		mp.Command = fmt.Sprintf("go test -run '^$' -bench . -benchmem -count %d -benchtime %s ./%s", e.o.MicroCount, e.o.MicroBenchtime, pkg)
		if e.o.Pin {
			args = append([]string{"taskset", "-c", e.o.ServerCPU}, args...)
			mp.Command = "taskset -c " + e.o.ServerCPU + " " + mp.Command
		}
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.Dir = pkg
		out, err := cmd.CombinedOutput()
		mp.Output = string(out)
		if err != nil {
			mp.Err = err.Error()
			failed = append(failed, pkg)
		}
		r.Packages = append(r.Packages, mp)
		bs := parseBench("./"+pkg, mp.Output)
		r.Benchmarks = append(r.Benchmarks, bs...)
		e.log.Info("micro", "package", pkg, "benchmarks", len(bs))
	}
	if len(failed) > 0 {
		return fmt.Errorf("micro-benchmarks failed in %s", strings.Join(failed, ", "))
	}
	return nil
}

func (e *env) allCPUs() string {
	if e.o.ServerCPU == "" {
		return e.o.ClientCPU
	}
	return e.o.ServerCPU + "," + e.o.ClientCPU
}

// parseBench groups `go test -bench` lines by benchmark name.
func parseBench(pkg, out string) []microBench {
	type acc struct{ ns, b, allocs []float64 }
	var order []string
	m := map[string]*acc{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		g := benchLine.FindStringSubmatch(strings.TrimSpace(sc.Text()))
		if g == nil {
			continue
		}
		a := m[g[1]]
		if a == nil {
			a = &acc{}
			m[g[1]] = a
			order = append(order, g[1])
		}
		ns, _ := strconv.ParseFloat(g[3], 64)
		a.ns = append(a.ns, ns)
		f := strings.Fields(g[4])
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			switch f[i+1] {
			case "B/op":
				a.b = append(a.b, v)
			case "allocs/op":
				a.allocs = append(a.allocs, v)
			}
		}
	}
	var out2 []microBench
	for _, name := range order {
		a := m[name]
		out2 = append(out2, microBench{Package: pkg, Name: name, NsPerOp: newFigure(name, "ns/op", a.ns),
			BytesPerOp: newFigure("", "", a.b).Median, AllocsPerOp: newFigure("", "", a.allocs).Median})
	}
	return out2
}
