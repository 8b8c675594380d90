package systemtest

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

const module = "github.com/jobpixel/jobpixel"

// floors places every package of the module (by path relative to the
// module root) on a floor of the house. A package may import packages of
// lower floors and of its own group; nothing imports a higher floor. Test
// support (floor testOnly) may be imported by tests only. A new package must
// be placed here, so its floor is a decision, not an accident.
var floors = map[string]struct {
	floor int
	group string
}{
	"cmd/jobpixel": {6, "cmd"}, "cmd/geodb": {6, "cmd"}, "bench": {6, "bench"},

	"app": {5, "app"},

	// Roles: none imports another role.
	"ingest": {4, "ingest"}, "ingest/spool": {4, "ingest"}, "ingest/tracker": {4, "ingest"},
	"pipeline": {4, "pipeline"}, "relay": {4, "relay"},
	"api": {4, "api"}, "api/dashboard": {4, "api"},

	// Domain and storage under the roles.
	"instruction": {3, "instruction"}, "internal/store": {3, "store"},
	"internal/salt": {3, "salt"}, "internal/devbroker": {3, "devbroker"},
	"internal/kafkaconn": {3, "kafkaconn"}, "internal/group": {3, "group"},

	// Platform clients and their shared types.
	"forward": {2, "forward"}, "forward/meta": {2, "forward"}, "forward/google": {2, "forward"},
	"forward/linkedin": {2, "forward"}, "forward/internal/httpx": {2, "forward"},

	// Pure leaves: nothing of the module, no service.
	"consent": {1, "consent"}, "anonymize": {1, "anonymize"}, "schemas": {1, "schemas"},
	"uaclass": {1, "uaclass"}, "geo": {1, "geo"}, "internal/tlsconf": {1, "tlsconf"},
	"internal/backoff": {1, "backoff"},

	// Test support and the system tests.
	"forward/meta/metatest": {testOnly, "test"}, "forward/google/googletest": {testOnly, "test"},
	"forward/linkedin/linkedintest": {testOnly, "test"}, "forward/internal/fakeserver": {testOnly, "test"},
	"internal/fakeclock": {testOnly, "test"}, "forward/internal/golden": {testOnly, "test"},
	"internal/testenv": {testOnly, "test"}, "internal/testenv/chdbexec": {testOnly, "test"},
	"systemtest": {testOnly, "systemtest"}, "systemtest/faulttest": {testOnly, "systemtest"},
	// The deploy files' test (deploy/ holds no Go code): it reads the flags
	// from app, as the system tests do.
	"deploy": {testOnly, "systemtest"},
}

const testOnly = 100

// isService reports whether a pure leaf must not import path: storage, the
// broker, network servers and clients, processes, logging (net/netip, a
// value type, is fine).
func isService(path string) bool {
	for _, s := range []string{"github.com/ClickHouse", "github.com/segmentio/kafka-go", "github.com/twmb/franz-go",
		"github.com/valyala/fasthttp", "net/http", "database/sql", "os/exec", "log/slog"} {
		if path == s || strings.HasPrefix(path, s+"/") {
			return true
		}
	}
	return path == "net"
}

type goPkg struct {
	ImportPath   string
	Imports      []string
	TestImports  []string
	XTestImports []string
}

func listPackages(t *testing.T) []goPkg {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	cmd := exec.Command(goBin, "list", "-json", "./...")
	cmd.Dir = ".."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []goPkg
	for dec := json.NewDecoder(bytes.NewReader(out)); dec.More(); {
		var p goPkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func rel(path string) (string, bool) {
	if path == module {
		return ".", true
	}
	return strings.CutPrefix(path, module+"/")
}

// TestFloors keeps the import direction of the README's "Layout": cmd and
// bench over app, app over the roles, the roles over instruction and the
// store, those over the platform clients and the pure leaves. A role never
// imports another role, nothing but cmd and bench imports app (the system
// tests do, from their own test package), a pure leaf imports neither the
// module nor a service, and test support is imported by tests only.
func TestFloors(t *testing.T) {
	for _, p := range listPackages(t) {
		name, _ := rel(p.ImportPath)
		me, ok := floors[name]
		if !ok {
			t.Errorf("package %s is on no floor: place it in floors (layout_test.go) and in the README's Layout", name)
			continue
		}
		check := func(imports []string, fromTest bool) {
			for _, imp := range imports {
				dep, ok := rel(imp)
				if !ok {
					if me.floor == 1 && !fromTest && isService(imp) {
						t.Errorf("pure leaf %s imports the service %s", name, imp)
					}
					continue
				}
				d, ok := floors[dep]
				switch {
				case !ok:
					continue // reported as a package on no floor
				case dep == "app" && me.group != "cmd" && me.group != "bench" && !(fromTest && me.group == "systemtest"):
					t.Errorf("%s imports app: only cmd, bench and the system tests may", name)
				case d.floor == testOnly && !fromTest && me.floor != testOnly:
					t.Errorf("%s imports the test support %s outside its tests", name, dep)
				case d.floor == testOnly || d.group == me.group:
				case me.floor == 1:
					t.Errorf("pure leaf %s imports %s of the module", name, dep)
				case d.floor >= me.floor && !(fromTest && me.floor == testOnly):
					t.Errorf("%s (floor %d) imports %s (floor %d): imports point down only, and no role imports another", name, me.floor, dep, d.floor)
				}
			}
		}
		check(p.Imports, false)
		check(p.TestImports, true)
		check(p.XTestImports, true)
	}
}

// TestREADMELayout: every package of the module is named in the README's
// "Layout" block, and the block names no package that does not exist.
func TestREADMELayout(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(readme), "\n## Layout\n")
	if !ok {
		t.Fatal(`README has no "## Layout" section`)
	}
	_, block, ok := strings.Cut(after, "```\n")
	if ok {
		block, _, ok = strings.Cut(block, "```")
	}
	if !ok {
		t.Fatal(`README "Layout" has no code block`)
	}
	named := map[string]bool{}
	for _, line := range strings.Split(block, "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasSuffix(f[0], "/") {
			named[strings.TrimSuffix(f[0], "/")] = true
		}
	}
	have := map[string]bool{}
	for _, p := range listPackages(t) {
		name, _ := rel(p.ImportPath)
		have[name] = true
		if !named[name] {
			t.Errorf("README Layout does not name %s/", name)
		}
	}
	for n := range named {
		if !have[n] {
			t.Errorf("README Layout names %s/, which is no package", n)
		}
	}
}
