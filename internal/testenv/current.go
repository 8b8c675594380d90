package testenv

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// chdbLib is where scripts/chdb.sh puts libchdb.so under its directory.
const chdbLib = "node_modules/@chdb/lib-linux-x64-gnu/libchdb.so"

// Engine is a current ClickHouse engine: chDB's embedded libchdb.so, run
// by the chdbexec helper in a child process of its own.
type Engine struct {
	lib, bin string
}

// Statement is one statement for the current engine, run in database DB
// ("" for default).
type Statement struct {
	DB  string `json:"db"`
	SQL string `json:"sql"`
}

// Outcome is what a statement did on the current engine: the rows it
// returned, or its error.
type Outcome struct {
	Rows  int    `json:"rows"`
	Error string `json:"error,omitempty"`
}

// CurrentEngine returns the current ClickHouse engine that scripts/chdb.sh
// (run by make deps) installed under $JOBPIXEL_TEST_CHDB, by default
// .data/chdb. When it is missing the test is skipped, with the command that
// installs it, or fails under CI (CI=true), where make deps must have
// installed it.
func CurrentEngine(t testing.TB) *Engine {
	t.Helper()
	root := Root(t)
	dir := os.Getenv("JOBPIXEL_TEST_CHDB")
	if dir == "" {
		dir = filepath.Join(root, ".data/chdb")
	}
	lib := filepath.Join(dir, chdbLib)
	if _, err := os.Stat(lib); err != nil {
		msg := fmt.Sprintf("no current ClickHouse engine at %s (install it with `bash scripts/chdb.sh %s`, which `make deps` runs; it needs npm): %v", lib, dir, err)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "chdbexec")
	build := exec.Command(goBin, "build", "-o", bin, "./internal/testenv/chdbexec")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build chdbexec: %v\n%s", err, out)
	}
	return &Engine{lib: lib, bin: bin}
}

// Run executes stmts in order in a fresh session of the engine (its data
// in a temporary directory) and returns the engine's version and one
// outcome per statement. A failing statement does not stop the others.
func (e *Engine) Run(t testing.TB, stmts []Statement) (version string, outcomes []Outcome) {
	t.Helper()
	var in bytes.Buffer
	enc := json.NewEncoder(&in)
	for _, s := range stmts {
		if err := enc.Encode(s); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(e.bin, "-path", t.TempDir())
	cmd.Env = append(os.Environ(), "CHDB_LIB_PATH="+e.lib)
	cmd.Stdin = &in
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chdbexec: %v\n%s", err, stderr.Bytes())
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 1<<20), 16<<20)
	var head struct {
		Version string `json:"version"`
	}
	if !sc.Scan() || json.Unmarshal(sc.Bytes(), &head) != nil || head.Version == "" {
		t.Fatalf("chdbexec: no version line in its output:\n%s\n%s", out, stderr.Bytes())
	}
	for sc.Scan() {
		var o Outcome
		if err := json.Unmarshal(sc.Bytes(), &o); err != nil {
			t.Fatalf("chdbexec: outcome %d: %v", len(outcomes)+1, err)
		}
		outcomes = append(outcomes, o)
	}
	if len(outcomes) != len(stmts) {
		t.Fatalf("chdbexec: %d outcomes for %d statements\n%s", len(outcomes), len(stmts), stderr.Bytes())
	}
	return head.Version, outcomes
}
