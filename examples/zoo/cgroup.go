package zoo

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// throttledQuota is the CPU quota (in CPUs) of cpu.throttled's broken twin:
// a tenth of one core, a container limit set far below what the service
// needs, while the machine's other cores stay idle.
const throttledQuota = 0.1

// cfsPeriodUs is the CFS period the quota is expressed in (the kernel's
// default, 100 ms).
const cfsPeriodUs = 100_000

// ErrNoCgroup wraps the reasons a CPU quota cannot be set on this machine.
var ErrNoCgroup = errors.New("no writable cgroup with the cpu controller")

// cgroup is the child cgroup the process moved itself into.
type cgroup struct {
	dir    string // the child's directory
	parent string // the procs file of the cgroup the process came from
}

// CPUQuotaSupported returns nil when this process may create a cgroup with
// a CPU quota (cgroup v2 with the cpu controller, or the v1 cpu
// hierarchy), else an error wrapping ErrNoCgroup that says why.
func CPUQuotaSupported() error {
	_, _, err := cgroupBase()
	return err
}

// cgroupBase finds where a child cgroup can be made: the directory of the
// process's own cgroup and whether it is cgroup v2.
func cgroupBase() (dir string, v2 bool, err error) {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return "", false, fmt.Errorf("%w: %v", ErrNoCgroup, err)
	}
	defer f.Close()
	var v2path, v1path string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			v2path = parts[2]
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == "cpu" {
				v1path = parts[2]
			}
		}
	}
	var reasons []string
	for _, root := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		if v2path == "" {
			break
		}
		ctrl, err := os.ReadFile(filepath.Join(root, "cgroup.controllers"))
		if err != nil {
			continue
		}
		dir := filepath.Join(root, v2path)
		if !slicesContainsField(string(ctrl), "cpu") {
			reasons = append(reasons, "cgroup v2 at "+root+" has no cpu controller")
			continue
		}
		if err := writable(dir); err != nil {
			reasons = append(reasons, err.Error())
			continue
		}
		return dir, true, nil
	}
	if v1path != "" {
		for _, root := range []string{"/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"} {
			dir := filepath.Join(root, v1path)
			if _, err := os.Stat(filepath.Join(dir, "cpu.cfs_quota_us")); err != nil {
				continue
			}
			if err := writable(dir); err != nil {
				reasons = append(reasons, err.Error())
				continue
			}
			return dir, false, nil
		}
	}
	if len(reasons) == 0 {
		reasons = append(reasons, "no cgroup v2 cpu controller or v1 cpu hierarchy found")
	}
	return "", false, fmt.Errorf("%w: %s", ErrNoCgroup, strings.Join(reasons, "; "))
}

func slicesContainsField(s, f string) bool {
	for _, x := range strings.Fields(s) {
		if x == f {
			return true
		}
	}
	return false
}

// writable checks that a child cgroup can be made in dir.
func writable(dir string) error {
	probe := filepath.Join(dir, "chokepoint-zoo-probe-"+strconv.Itoa(os.Getpid()))
	if err := os.Mkdir(probe, 0o755); err != nil {
		return fmt.Errorf("cannot create a cgroup in %s: %v", dir, err)
	}
	return os.Remove(probe)
}

// enterCPUQuota creates a child cgroup limited to cpus CPUs and moves the
// whole process into it.
func enterCPUQuota(cpus float64) (*cgroup, error) {
	base, v2, err := cgroupBase()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(base, "chokepoint-zoo-"+strconv.Itoa(os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("cgroup: %w", err)
	}
	cg := &cgroup{dir: dir, parent: filepath.Join(base, "cgroup.procs")}
	quota := strconv.Itoa(int(cpus * cfsPeriodUs))
	var werr error
	if v2 {
		// The parent must delegate the cpu controller to its children.
		werr = os.WriteFile(filepath.Join(base, "cgroup.subtree_control"), []byte("+cpu"), 0)
		if werr == nil {
			werr = os.WriteFile(filepath.Join(dir, "cpu.max"), []byte(quota+" "+strconv.Itoa(cfsPeriodUs)), 0)
		}
	} else {
		werr = os.WriteFile(filepath.Join(dir, "cpu.cfs_period_us"), []byte(strconv.Itoa(cfsPeriodUs)), 0)
		if werr == nil {
			werr = os.WriteFile(filepath.Join(dir, "cpu.cfs_quota_us"), []byte(quota), 0)
		}
	}
	if werr == nil {
		werr = os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0)
	}
	if werr != nil {
		os.Remove(dir)
		return nil, fmt.Errorf("cgroup: %w", werr)
	}
	return cg, nil
}

// leave moves the process back to its original cgroup and removes the
// child.
func (c *cgroup) leave() error {
	if err := os.WriteFile(c.parent, []byte(strconv.Itoa(os.Getpid())), 0); err != nil {
		return fmt.Errorf("cgroup: leave: %w", err)
	}
	if err := os.Remove(c.dir); err != nil {
		return fmt.Errorf("cgroup: remove: %w", err)
	}
	return nil
}
