package run

import (
	"os"
	"runtime"
	"strconv"
	"strings"
)

// Status values of a run (manifest and report).
const (
	StatusRunning  = "running"
	StatusComplete = "complete"
	StatusPartial  = "partial"
	StatusFailed   = "failed"
)

// Manifest is manifest.json: what ran, where and when.
type Manifest struct {
	Schema     string   `json:"schema"`
	Command    string   `json:"command"`
	Args       []string `json:"args"` // redacted
	Version    string   `json:"chokepoint_version"`
	GoVersion  string   `json:"go_version"`
	Machine    Machine  `json:"machine"`
	StartMS    int64    `json:"start_ms"`
	EndMS      int64    `json:"end_ms,omitempty"`
	Status     string   `json:"status"`
	StatusNote string   `json:"status_note,omitempty"`
}

// ManifestSchema identifies manifest.json.
const ManifestSchema = "chokepoint.manifest/v1"

// Machine describes the machine the generator ran on.
type Machine struct {
	Hostname    string `json:"hostname"`
	OS          string `json:"os"`
	Arch        string `json:"arch"`
	Cores       int    `json:"cores"`
	MemoryBytes int64  `json:"memory_bytes"`
}

// ThisMachine reads the current machine's description.
func ThisMachine() Machine {
	h, _ := os.Hostname()
	return Machine{Hostname: h, OS: runtime.GOOS, Arch: runtime.GOARCH, Cores: runtime.NumCPU(), MemoryBytes: memTotal()}
}

func memTotal() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}
