package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// child is a process the benchmark started. It dies with the benchmark
// (PR_SET_PDEATHSIG), and is stopped by its pid only.
type child struct {
	name  string
	cmd   *exec.Cmd
	lines chan string // stdout, line by line; closed when the process ends
	log   *os.File
	done  chan struct{}
	err   error
}

var (
	childrenMu sync.Mutex
	children   = map[*child]bool{}
)

// startChild runs argv pinned to cpus (taskset -c) when cpus is not empty.
// Stderr and stdout go to logDir/name.log; stdout lines are also delivered
// on c.lines.
func startChild(name, cpus, logDir string, argv []string, env ...string) (*child, error) {
	if cpus != "" {
		argv = append([]string{"taskset", "-c", cpus}, argv...)
	}
	logf, err := os.OpenFile(filepath.Join(logDir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(logf, "# %s\n", strings.Join(argv, " "))
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = logf
	out, err := cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, lines: make(chan string, 1024), log: logf, done: make(chan struct{})}
	childrenMu.Lock()
	children[c] = true
	childrenMu.Unlock()
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 64<<20)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logf, "[stdout] "+line)
			c.lines <- line
		}
		close(c.lines)
		c.err = cmd.Wait()
		close(c.done)
		childrenMu.Lock()
		delete(children, c)
		childrenMu.Unlock()
	}()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// waitLine returns the rest of the first stdout line starting with prefix.
func (c *child) waitLine(prefix string, timeout time.Duration) (string, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case l, ok := <-c.lines:
			if !ok {
				<-c.done
				return "", fmt.Errorf("%s exited (%v) before printing %q; see %s", c.name, c.err, prefix, c.log.Name())
			}
			if rest, ok := strings.CutPrefix(l, prefix); ok {
				return strings.TrimSpace(rest), nil
			}
		case <-t.C:
			return "", fmt.Errorf("%s did not print %q within %s; see %s", c.name, prefix, timeout, c.log.Name())
		}
	}
}

// wait waits for the process to exit on its own.
func (c *child) wait(timeout time.Duration) error {
	select {
	case <-c.done:
		return c.err
	case <-time.After(timeout):
		c.kill()
		return fmt.Errorf("%s did not finish within %s; killed", c.name, timeout)
	}
}

// stop sends SIGTERM and, after grace, SIGKILL.
func (c *child) stop(grace time.Duration) {
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(grace):
		c.kill()
	}
}

func (c *child) kill() {
	_ = c.cmd.Process.Kill()
	<-c.done
}

// stopAllChildren kills every child still running (on interrupt).
func stopAllChildren() {
	childrenMu.Lock()
	cs := make([]*child, 0, len(children))
	for c := range children {
		cs = append(cs, c)
	}
	childrenMu.Unlock()
	for _, c := range cs {
		c.stop(3 * time.Second)
	}
}

// procStat is what /proc says about one process.
type procStat struct {
	CPU    time.Duration // user + system, all threads (dead ones included)
	RSSKB  int64
	HWMKB  int64 // peak RSS since start or the last resetPeakRSS
	RunNs  int64 // time on a CPU, live threads (schedstat)
	WaitNs int64 // time runnable but waiting for a CPU, live threads
}

const clockTicks = 100 // USER_HZ on Linux

func readProc(pid int) (procStat, error) {
	var s procStat
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// Fields after the command name in parentheses: state is field 3;
	// utime and stime are fields 14 and 15.
	rest := string(b[strings.LastIndexByte(string(b), ')')+2:])
	f := strings.Fields(rest)
	if len(f) < 13 {
		return s, fmt.Errorf("short /proc/%d/stat", pid)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	s.CPU = time.Duration(ut+st) * time.Second / clockTicks
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			s.RSSKB = n
		case "VmHWM":
			s.HWMKB = n
		}
	}
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) >= 2 {
			r, _ := strconv.ParseInt(f[0], 10, 64)
			w, _ := strconv.ParseInt(f[1], 10, 64)
			s.RunNs += r
			s.WaitNs += w
		}
	}
	return s, nil
}

// resetPeakRSS resets VmHWM to the current RSS (Linux ≥ 4.0, needs to own
// the process or be root). It reports whether that worked.
func resetPeakRSS(pid int) bool {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0) == nil
}

// sysCPU is the machine-wide CPU time from /proc/stat.
type sysCPU struct {
	Busy, Total time.Duration // summed over all CPUs
	Steal       time.Duration
}

func readSysCPU() sysCPU {
	var s sysCPU
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		d := time.Duration(n) * time.Second / clockTicks
		if i >= 8 { // guest time is already in user
			continue
		}
		s.Total += d
		if i != 3 && i != 4 { // idle, iowait
			s.Busy += d
		}
		if i == 7 {
			s.Steal += d
		}
	}
	return s
}

// window measures a stretch of time: our processes' CPU and what everything
// else on the machine used meanwhile.
type window struct {
	start  time.Time
	sys    sysCPU
	pids   map[string]int
	before map[string]procStat
}

func openWindow(pids map[string]int) *window {
	w := &window{start: time.Now(), sys: readSysCPU(), pids: pids, before: map[string]procStat{}}
	for name, pid := range pids {
		if s, err := readProc(pid); err == nil {
			w.before[name] = s
		}
	}
	return w
}

// usage is the outcome of a window.
type usage struct {
	Seconds float64 `json:"seconds"`
	// CPU in cores (1.0 = one core busy all the time) per process.
	CPU map[string]float64 `json:"cpu_cores"`
	// Starvation is the share of the time a process's threads were
	// runnable that they spent waiting for a CPU instead of running:
	// wait / (run + wait) from /proc/PID/task/*/schedstat. Near 0 on a quiet
	// machine; high when other processes hold the CPU.
	Starvation map[string]float64 `json:"cpu_starvation"`
	// ForeignCPU is the CPU (in cores) used by everything that is not one
	// of our processes: other tests, fuzzers, ClickHouse, the kernel.
	ForeignCPU float64 `json:"foreign_cpu_cores"`
	Steal      float64 `json:"steal_cores"`
}

func (w *window) close() usage {
	el := time.Since(w.start)
	sys := readSysCPU()
	u := usage{Seconds: el.Seconds(), CPU: map[string]float64{}, Starvation: map[string]float64{}}
	var ours time.Duration
	for name, pid := range w.pids {
		b, ok := w.before[name]
		a, err := readProc(pid)
		if !ok || err != nil {
			continue
		}
		d := a.CPU - b.CPU
		ours += d
		u.CPU[name] = d.Seconds() / el.Seconds()
		if run, wait := a.RunNs-b.RunNs, a.WaitNs-b.WaitNs; run+wait > 0 {
			u.Starvation[name] = float64(wait) / float64(run+wait)
		}
	}
	u.ForeignCPU = max(0, (sys.Busy-w.sys.Busy-ours).Seconds()/el.Seconds())
	u.Steal = (sys.Steal - w.sys.Steal).Seconds() / el.Seconds()
	return u
}
