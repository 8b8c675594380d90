// Package deploy_test holds the deploy files next to it (systemd/ and
// kubernetes/) to the code: every file parses strictly; every flag and
// environment variable a file names is one app.Config registers, with a
// value it accepts; and the files fit together: each process runs its
// role against the real Kafka cluster, probes ask the ops listener, the
// ops port stays private, the shutdown fits in the time the service
// manager gives it, ingest's data directory and spool are on a volume, and
// every Service, HorizontalPodAutoscaler and PodDisruptionBudget targets a
// Deployment that exists.
package deploy_test

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jobpixel/jobpixel/app"
)

// roles are the roles of `jobpixel serve -roles`; each gets a unit and a
// Deployment of its own.
var roles = []string{"ingest", "pipeline", "forward", "api"}

// usageEnv is how app.Config.Register ends every flag's help text: the
// environment variable that overrides the flag.
var usageEnv = regexp.MustCompile(`\(env (JOBPIXEL_[A-Z0-9_]+)\)$`)

// envVar finds the names of the JOBPIXEL_ environment in a text; envLine
// is one such name alone.
var (
	envVar  = regexp.MustCompile(`JOBPIXEL_[A-Z0-9_]+`)
	envLine = regexp.MustCompile(`^JOBPIXEL_[A-Z0-9_]+$`)
)

// newFlags registers app.Config's flags on a fresh flag set, as `jobpixel
// serve` does, and returns the set and its flags by environment variable.
// The caller's environment must hold no JOBPIXEL_ variable (see
// isolateEnv): Register takes defaults from it.
func newFlags() (*app.Config, *flag.FlagSet, map[string]string, error) {
	var c app.Config
	fs := flag.NewFlagSet("jobpixel serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.Register(fs)
	byEnv := map[string]string{}
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		m := usageEnv.FindStringSubmatch(f.Usage)
		if m == nil {
			errs = append(errs, fmt.Errorf("flag -%s: help text names no (env JOBPIXEL_...)", f.Name))
			return
		}
		byEnv[m[1]] = f.Name
	})
	return &c, fs, byEnv, errors.Join(errs...)
}

// isolateEnv removes the JOBPIXEL_ variables of the test's own
// environment for the test's duration, so that only the files configure.
func isolateEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, "JOBPIXEL_") {
			t.Setenv(name, "") // restores the value after the test
			os.Unsetenv(name)
		}
	}
}

// configure returns the configuration a `jobpixel` process started with
// env and args gets: args must be `serve` and flags only; every variable
// of env must be a flag's override and its value one the flag accepts
// (Register ignores a value it cannot parse; here that is an error); an
// explicit flag wins over env, as in the binary.
func configure(env map[string]string, args []string) (app.Config, error) {
	c, fs, byEnv, err := newFlags()
	if err != nil {
		return app.Config{}, err
	}
	for _, name := range slices.Sorted(maps.Keys(env)) {
		f, ok := byEnv[name]
		if !ok {
			return app.Config{}, fmt.Errorf("%s is no flag's environment variable", name)
		}
		if err := fs.Set(f, env[name]); err != nil {
			return app.Config{}, fmt.Errorf("%s=%q: %w", name, env[name], err)
		}
	}
	if len(args) == 0 || args[0] != "serve" {
		return app.Config{}, fmt.Errorf("arguments %q: want the command serve first", args)
	}
	if err := fs.Parse(args[1:]); err != nil {
		return app.Config{}, fmt.Errorf("arguments %q: %w", args, err)
	}
	if fs.NArg() > 0 {
		return app.Config{}, fmt.Errorf("arguments %q: %q after the flags", args, fs.Args())
	}
	return *c, nil
}

// port returns the port of a listen address such as ":9464" and its host.
func port(addr string) (host string, p int, err error) {
	host, ps, err := net.SplitHostPort(addr)
	if err == nil {
		p, err = strconv.Atoi(ps)
	}
	if err != nil {
		return "", 0, fmt.Errorf("listen address %q: %w", addr, err)
	}
	return host, p, nil
}

// ingestState is where the ingest role of c writes (as app.Start
// decides): its data directory (the campaign snapshot) and its spool.
func ingestState(c app.Config) []string {
	spool := c.SpoolDir
	if spool == "" {
		spool = filepath.Join(c.DataDir, "spool")
	}
	return []string{c.DataDir, spool}
}

// checkRole checks that c runs role, with the real Kafka cluster where the
// role uses Kafka (without brokers it would start a development broker).
func checkRole(c app.Config, role string) error {
	if c.Roles != role {
		return fmt.Errorf("runs -roles %q, want %q", c.Roles, role)
	}
	if c.KafkaBrokers == "" && role != "api" {
		return errors.New("no -kafka.brokers (JOBPIXEL_KAFKA_BROKERS): the role would start a development broker")
	}
	return nil
}

// within reports whether path is dir or lies under it.
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../") && !filepath.IsAbs(rel)
}

// deployFiles returns every file under systemd/ and kubernetes/.
func deployFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	for _, dir := range []string{"systemd", "kubernetes"} {
		err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				files = append(files, path)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(files) == 0 {
		t.Fatal("no deploy files")
	}
	return files
}

// TestEnvironmentNames: every JOBPIXEL_ variable a deploy file names,
// comments included, overrides a flag; and the example environment file
// names every flag a production setup must decide on for TLS, SASL,
// passwords and secrets.
func TestEnvironmentNames(t *testing.T) {
	isolateEnv(t)
	_, fs, byEnv, err := newFlags()
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range deployFiles(t) {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range envVar.FindAllString(string(data), -1) {
			if _, ok := byEnv[name]; !ok {
				t.Errorf("%s names %s, which overrides no flag (app.Config.Register)", path, name)
			}
		}
	}
	example, err := os.ReadFile(exampleEnv)
	if err != nil {
		t.Fatal(err)
	}
	named := map[string]bool{}
	for _, name := range envVar.FindAllString(string(example), -1) {
		named[name] = true
	}
	sensitive := regexp.MustCompile(`(^|[.-])(tls|sasl)|password|secret`)
	fs.VisitAll(func(f *flag.Flag) {
		name := usageEnv.FindStringSubmatch(f.Usage)[1]
		if sensitive.MatchString(f.Name) && !named[name] {
			t.Errorf("%s does not name %s (-%s): a production setup decides on it; add it, commented out if optional", exampleEnv, name, f.Name)
		}
	})
}

// exampleEnv is the example of /etc/jobpixel/jobpixel.env, which every
// unit reads.
const exampleEnv = "systemd/jobpixel.env.example"

// parseEnvFile reads an environment file strictly: blank lines, comments
// (#) and NAME=value lines, no quotes, no continuation lines, no name
// twice (systemd would accept more; the files need no more).
func parseEnvFile(data []byte) (map[string]string, error) {
	env := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		switch {
		case !ok || !envLine.MatchString(name):
			return nil, fmt.Errorf("line %d: want JOBPIXEL_NAME=value, have %q", n, line)
		case strings.ContainsAny(value, `"'\`):
			return nil, fmt.Errorf("line %d: quotes and backslashes are not read here", n)
		}
		if _, dup := env[name]; dup {
			return nil, fmt.Errorf("line %d: %s set twice", n, name)
		}
		env[name] = value
	}
	return env, sc.Err()
}

// unitFile is a parsed systemd unit: section → directive → values, in
// file order.
type unitFile map[string]map[string][]string

// directives are the directives the units may use, by section: the ones
// this test knows how systemd reads. A misspelt directive (which systemd
// only warns about) fails the test.
var directives = map[string][]string{
	"Unit": {"Description", "Documentation", "Wants", "Requires", "After", "Before"},
	"Service": {"Type", "EnvironmentFile", "ExecStart", "Restart", "RestartSec", "KillSignal", "TimeoutStopSec",
		"DynamicUser", "User", "Group", "StateDirectory", "StateDirectoryMode", "LimitNOFILE",
		"ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices", "NoNewPrivileges",
		"CapabilityBoundingSet", "AmbientCapabilities", "ProtectKernelTunables", "ProtectKernelModules",
		"ProtectKernelLogs", "ProtectControlGroups", "ProtectClock", "ProtectHostname",
		"RestrictAddressFamilies", "RestrictNamespaces", "RestrictRealtime", "RestrictSUIDSGID",
		"LockPersonality", "MemoryDenyWriteExecute", "SystemCallArchitectures", "SystemCallFilter", "UMask"},
	"Install": {"WantedBy"},
}

// parseUnit reads a unit file strictly: [Section] headers, Directive=value
// lines, # and ; comments; no continuation lines, only known directives.
func parseUnit(data []byte) (unitFile, error) {
	u := unitFile{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
			continue
		case strings.HasSuffix(line, `\`):
			return nil, fmt.Errorf("line %d: continuation lines are not read here", n)
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			if _, ok := directives[section]; !ok {
				return nil, fmt.Errorf("line %d: unknown section [%s]", n, section)
			}
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		switch {
		case !ok:
			return nil, fmt.Errorf("line %d: want Directive=value, have %q", n, line)
		case section == "":
			return nil, fmt.Errorf("line %d: %s outside a section", n, key)
		case !slices.Contains(directives[section], key):
			return nil, fmt.Errorf("line %d: [%s] has no directive %s known to this test", n, section, key)
		}
		u[section][key] = append(u[section][key], value)
	}
	return u, sc.Err()
}

// one returns the single value of a directive, "" if it is not set.
func (u unitFile) one(section, key string) (string, error) {
	switch v := u[section][key]; len(v) {
	case 0:
		return "", nil
	case 1:
		return v[0], nil
	default:
		return "", fmt.Errorf("[%s] %s is set %d times", section, key, len(v))
	}
}

// systemdSpan parses a time span as the units write it: 30s, 2min, 90.
func systemdSpan(s string) (time.Duration, error) {
	if n, err := strconv.Atoi(s); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	return time.ParseDuration(strings.Replace(s, "min", "m", 1))
}

// TestSystemdUnits: one unit per role, each running `jobpixel serve -roles
// ROLE` with flags that exist, configured from the example environment
// file (with the Kafka brokers), hardened, with a private ops port of its
// own (the four may share a host), stopped with SIGTERM and given longer
// than -shutdown-timeout, and ingest's data directory and spool in the
// unit's state directory.
func TestSystemdUnits(t *testing.T) {
	isolateEnv(t)
	data, err := os.ReadFile(exampleEnv)
	if err != nil {
		t.Fatal(err)
	}
	env, err := parseEnvFile(data)
	if err != nil {
		t.Fatalf("%s: %v", exampleEnv, err)
	}
	ports := map[int]string{}
	for _, role := range roles {
		path := filepath.Join("systemd", "jobpixel-"+role+".service")
		data, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("role %s has no unit: %v", role, err)
			continue
		}
		u, err := parseUnit(data)
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		if err := checkUnit(u, role, env, ports); err != nil {
			t.Errorf("%s: %v", path, err)
		}
	}
	units, _ := filepath.Glob("systemd/*.service")
	if len(units) != len(roles) {
		t.Errorf("systemd/ holds %d units, want one per role (%v): %v", len(units), roles, units)
	}
}

// checkUnit checks the unit of role; ports collects the ports the units
// listen on, so that no two units share one.
func checkUnit(u unitFile, role string, env map[string]string, ports map[int]string) error {
	var errs []error
	want := func(key, value string) {
		if v, _ := u.one("Service", key); v != value {
			errs = append(errs, fmt.Errorf("[Service] %s=%s, want %s", key, v, value))
		}
	}
	want("Restart", "on-failure")
	want("KillSignal", "SIGTERM")
	want("ProtectSystem", "strict")
	want("NoNewPrivileges", "yes")
	want("PrivateTmp", "yes")
	if dyn, _ := u.one("Service", "DynamicUser"); dyn != "yes" {
		if user, _ := u.one("Service", "User"); user == "" || user == "root" || user == "0" {
			errs = append(errs, errors.New("runs as root: want DynamicUser=yes or a User of its own"))
		}
	}
	if f, _ := u.one("Service", "EnvironmentFile"); strings.TrimPrefix(f, "-") != "/etc/jobpixel/jobpixel.env" {
		errs = append(errs, fmt.Errorf("EnvironmentFile=%s, want /etc/jobpixel/jobpixel.env", f))
	}
	exec, err := u.one("Service", "ExecStart")
	if err != nil || exec == "" {
		return errors.Join(append(errs, fmt.Errorf("ExecStart: want one (%v)", err))...)
	}
	if strings.ContainsAny(exec, `"'$%\`) {
		return errors.Join(append(errs, fmt.Errorf("ExecStart=%s: quotes, $ and %% specifiers are not read here", exec))...)
	}
	args := strings.Fields(exec)
	if args[0] != "/usr/local/bin/jobpixel" {
		errs = append(errs, fmt.Errorf("ExecStart runs %s, want /usr/local/bin/jobpixel", args[0]))
	}
	c, err := configure(env, args[1:])
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("EnvironmentFile and ExecStart: %w", err))...)
	}
	errs = append(errs, checkRole(c, role))
	stop, err := u.one("Service", "TimeoutStopSec")
	d, perr := systemdSpan(stop)
	switch {
	case err != nil || perr != nil:
		errs = append(errs, fmt.Errorf("TimeoutStopSec=%s: %v", stop, errors.Join(err, perr)))
	case d <= c.ShutdownTimeout:
		errs = append(errs, fmt.Errorf("TimeoutStopSec=%s is not longer than -shutdown-timeout %s: systemd would kill a clean shutdown", stop, c.ShutdownTimeout))
	}
	if c.DrainDelay >= c.ShutdownTimeout {
		errs = append(errs, fmt.Errorf("-shutdown.drain-delay %s leaves nothing of -shutdown-timeout %s", c.DrainDelay, c.ShutdownTimeout))
	}
	host, ops, err := port(c.OpsAddr)
	if a, perr := netip.ParseAddr(host); err != nil || perr != nil || !a.IsLoopback() {
		errs = append(errs, fmt.Errorf("-ops.addr %q: want a loopback address, the ops listener is private (%v)", c.OpsAddr, errors.Join(err, perr)))
	}
	listens := map[int]string{ops: "-ops.addr"}
	switch role {
	case "ingest":
		_, p, err := port(c.IngestAddr)
		errs = append(errs, err)
		listens[p] = "-ingest.addr"
		state, _ := u.one("Service", "StateDirectory")
		for _, path := range ingestState(c) {
			if dir := filepath.Join("/var/lib", state); state == "" || !within(path, dir) {
				errs = append(errs, fmt.Errorf("%s is not in the StateDirectory %q: it must be writable and survive restarts", path, state))
			}
		}
	case "api":
		_, p, err := port(c.APIAddr)
		errs = append(errs, err)
		listens[p] = "-api.addr"
	}
	if len(listens) != 1+boolInt(role == "ingest" || role == "api") {
		errs = append(errs, fmt.Errorf("two listeners on one port: %v", listens))
	}
	for p, what := range listens {
		if other, ok := ports[p]; ok {
			errs = append(errs, fmt.Errorf("%s port %d is %s's too: units on one host need ports of their own", what, p, other))
		}
		ports[p] = "jobpixel-" + role + " " + what
	}
	return errors.Join(errs...)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestCheckersRefuse: the readers and checks above fail on what they
// exist to catch, so a green run means the files are right.
func TestCheckersRefuse(t *testing.T) {
	isolateEnv(t)
	for _, tc := range []struct {
		what string
		err  error
	}{
		{"a flag that does not exist", func() error {
			_, err := configure(nil, []string{"serve", "-roles", "ingest", "-ingest.no-such-flag", "1"})
			return err
		}()},
		{"an environment variable of no flag", func() error {
			_, err := configure(map[string]string{"JOBPIXEL_NO_SUCH_FLAG": "1"}, []string{"serve"})
			return err
		}()},
		{"a value the flag does not accept", func() error {
			_, err := configure(map[string]string{"JOBPIXEL_SHUTDOWN_TIMEOUT": "20"}, []string{"serve"})
			return err
		}()},
		{"an argument after the flags", func() error {
			_, err := configure(nil, []string{"serve", "-roles", "api", "ingest"})
			return err
		}()},
		{"a misspelt unit directive", func() error {
			_, err := parseUnit([]byte("[Service]\nProtectSytem=strict\n"))
			return err
		}()},
		{"a quoted environment file value", func() error {
			_, err := parseEnvFile([]byte("JOBPIXEL_ROLES=\"api\"\n"))
			return err
		}()},
		{"a misspelt manifest field", func() error {
			return newManifests().add([]byte("apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {selecter: {a: b}}\n"))
		}()},
		{"a kind of the wrong version", func() error {
			return newManifests().add([]byte("apiVersion: autoscaling/v1\nkind: HorizontalPodAutoscaler\nmetadata: {name: x}\n"))
		}()},
	} {
		if tc.err == nil {
			t.Errorf("%s: accepted", tc.what)
		} else {
			t.Logf("%s: %v", tc.what, tc.err)
		}
	}
}
