package main

import (
	"os"
	"os/exec"
	"runtime"
	"strings"
)

type machineInfo struct {
	CPUModel   string `json:"cpu_model"`
	Cores      int    `json:"cores"` // logical CPUs of the machine
	MemTotal   string `json:"mem_total"`
	Kernel     string `json:"kernel"`
	Go         string `json:"go"`
	ClickHouse string `json:"clickhouse"`
	Kafka      string `json:"kafka"`
	ServerCPU  string `json:"server_cpu"`
	ClientCPU  string `json:"client_cpu"`
	Hostname   string `json:"hostname"`
}

func describeMachine(o *options) machineInfo {
	m := machineInfo{Go: runtime.Version(), ServerCPU: o.ServerCPU, ClientCPU: o.ClientCPU,
		Kafka: "kfake (franz-go) via `jobpixel broker`, 6 partitions, data directory on local disk"}
	if o.ServerCPU == "" {
		m.ServerCPU, m.ClientCPU = "unpinned", "unpinned"
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			switch strings.TrimSpace(k) {
			case "model name":
				if m.CPUModel == "" {
					m.CPUModel = strings.TrimSpace(v)
				}
			case "processor":
				m.Cores++
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				m.MemTotal = strings.TrimSpace(v)
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	m.Hostname, _ = os.Hostname()
	return m
}

type gitInfo struct {
	Commit string   `json:"commit"`
	Dirty  []string `json:"dirty,omitempty"` // `git status --porcelain`
}

func describeGit() gitInfo {
	var g gitInfo
	if out, err := exec.Command("git", "rev-parse", "HEAD").Output(); err == nil {
		g.Commit = strings.TrimSpace(string(out))
	} else {
		g.Commit = "unknown (" + err.Error() + ")"
	}
	if out, err := exec.Command("git", "--no-optional-locks", "status", "--porcelain").Output(); err == nil {
		for _, l := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
			if l != "" {
				g.Dirty = append(g.Dirty, l)
			}
		}
	}
	return g
}
