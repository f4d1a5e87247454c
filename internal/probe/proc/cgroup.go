package proc

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/procfs"
)

// cgroupCPU locates one process's cgroup CPU files.
type cgroupCPU struct {
	version int
	path    string // as /proc/PID/cgroup names it
	dir     string // where its files are on this machine
}

// cgroupRaw is one reading of the cgroup's CPU files; throttled in seconds.
type cgroupRaw struct {
	quotaCores *float64
	periods    uint64
	throttled  uint64
	throttledS float64
}

// findCgroupCPU finds the cgroup holding a process's CPU controller: the
// v2 unified hierarchy when it has cpu.max (or cpu.stat with throttling
// counters), else the v1 "cpu" hierarchy. mounts are this process's mounts:
// the path in /proc/PID/cgroup is relative to our cgroup namespace.
func findCgroupCPU(cgs []procfs.Cgroup, mounts []*procfs.MountInfo) (*cgroupCPU, error) {
	var v1, v2 *cgroupCPU
	for _, cg := range cgs {
		switch {
		case cg.HierarchyID == 0 && len(cg.Controllers) == 0:
			for _, m := range mounts {
				if m.FSType != "cgroup2" {
					continue
				}
				dir := join(m, cg.Path)
				if exists(filepath.Join(dir, "cpu.max")) || hasThrottling(filepath.Join(dir, "cpu.stat")) {
					v2 = &cgroupCPU{version: 2, path: cg.Path, dir: dir}
					break
				}
			}
		case slices.Contains(cg.Controllers, "cpu"):
			for _, m := range mounts {
				if m.FSType != "cgroup" {
					continue
				}
				if _, ok := m.SuperOptions["cpu"]; !ok {
					continue
				}
				dir := join(m, cg.Path)
				if exists(filepath.Join(dir, "cpu.cfs_quota_us")) {
					v1 = &cgroupCPU{version: 1, path: cg.Path, dir: dir}
					break
				}
			}
		}
	}
	if v2 != nil {
		return v2, nil
	}
	if v1 != nil {
		return v1, nil
	}
	return nil, errors.New("no cgroup CPU controller found")
}

// join places a cgroup path under the mount that shows it, removing the
// mount's own root (inside a container the mount root is the container's
// cgroup).
func join(m *procfs.MountInfo, path string) string {
	rel := path
	if m.Root != "/" && m.Root != "" {
		if r, ok := strings.CutPrefix(path, m.Root); ok {
			rel = r
		}
	}
	return filepath.Join(m.MountPoint, filepath.Clean("/"+rel))
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func hasThrottling(p string) bool {
	b, err := readSmall(p)
	return err == nil && bytes.Contains(b, []byte("nr_throttled"))
}

// maxCgroupFile bounds a cgroup or small /proc file read (they are a few
// hundred bytes; a children list a few KiB).
const maxCgroupFile = 64 << 10

func readSmall(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxCgroupFile))
}

// read reads the cgroup's limit and cumulative throttling counters.
func (c *cgroupCPU) read() (cgroupRaw, error) {
	var r cgroupRaw
	// cpu.stat's throttled time: v2 counts microseconds, v1 nanoseconds.
	throttledKey, perSecond := "throttled_usec", 1e6
	switch c.version {
	case 2:
		if b, err := readSmall(filepath.Join(c.dir, "cpu.max")); err == nil {
			q, err := parseCPUMax(string(b))
			if err != nil {
				return r, err
			}
			r.quotaCores = q
		}
	case 1:
		qb, err := readSmall(filepath.Join(c.dir, "cpu.cfs_quota_us"))
		if err != nil {
			return r, fmt.Errorf("cgroup cpu.cfs_quota_us: %w", err)
		}
		pb, err := readSmall(filepath.Join(c.dir, "cpu.cfs_period_us"))
		if err != nil {
			return r, fmt.Errorf("cgroup cpu.cfs_period_us: %w", err)
		}
		q, err := parseV1Quota(string(qb), string(pb))
		if err != nil {
			return r, err
		}
		r.quotaCores = q
		throttledKey, perSecond = "throttled_time", 1e9
	default:
		return r, nil
	}
	b, err := readSmall(filepath.Join(c.dir, "cpu.stat"))
	if err != nil {
		return r, fmt.Errorf("cgroup cpu.stat: %w", err)
	}
	st := parseFlatKeyed(b)
	r.periods, r.throttled = st["nr_periods"], st["nr_throttled"]
	r.throttledS = float64(st[throttledKey]) / perSecond
	return r, nil
}

// parseCPUMax reads cgroup v2 cpu.max ("max 100000" or "50000 100000"):
// the CPUs the group may use, nil when unlimited.
func parseCPUMax(s string) (*float64, error) {
	f := strings.Fields(s)
	if len(f) == 0 || len(f) > 2 {
		return nil, fmt.Errorf("cgroup cpu.max %q: want \"QUOTA PERIOD\"", strings.TrimSpace(s))
	}
	if f[0] == "max" {
		return nil, nil
	}
	period := 100000.0 // the kernel's default when the period is omitted
	if len(f) == 2 {
		p, err := strconv.ParseFloat(f[1], 64)
		if err != nil || p <= 0 {
			return nil, fmt.Errorf("cgroup cpu.max %q: bad period", strings.TrimSpace(s))
		}
		period = p
	}
	q, err := strconv.ParseFloat(f[0], 64)
	if err != nil || q <= 0 {
		return nil, fmt.Errorf("cgroup cpu.max %q: bad quota", strings.TrimSpace(s))
	}
	cores := q / period
	return &cores, nil
}

// parseV1Quota reads cgroup v1 cpu.cfs_quota_us (-1: unlimited) and
// cpu.cfs_period_us.
func parseV1Quota(quota, period string) (*float64, error) {
	q, err := strconv.ParseInt(strings.TrimSpace(quota), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("cgroup cpu.cfs_quota_us %q: %w", strings.TrimSpace(quota), err)
	}
	if q < 0 {
		return nil, nil
	}
	p, err := strconv.ParseInt(strings.TrimSpace(period), 10, 64)
	if err != nil || p <= 0 {
		return nil, fmt.Errorf("cgroup cpu.cfs_period_us %q: bad period", strings.TrimSpace(period))
	}
	cores := float64(q) / float64(p)
	return &cores, nil
}

// parseFlatKeyed reads "key value" lines (cpu.stat); unparsable lines are
// skipped.
func parseFlatKeyed(b []byte) map[string]uint64 {
	out := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		if v, err := strconv.ParseUint(f[1], 10, 64); err == nil {
			out[f[0]] = v
		}
	}
	return out
}
