package proc

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/procfs"

	"github.com/chokepoint/chokepoint/internal/evidence"
	"github.com/chokepoint/chokepoint/internal/lowport"
	"github.com/chokepoint/chokepoint/internal/probe"
	"github.com/chokepoint/chokepoint/internal/run"
	"github.com/chokepoint/chokepoint/internal/testchild"
)

const envChild = "CHOKEPOINT_PROC_TEST_CHILD" // "busy", "idle" or "parent": act as the watched process

// treeWorkers is how many busy children a "parent" child starts: like a
// pre-fork server's master, the parent itself only waits.
const treeWorkers = 2

func TestMain(m *testing.M) {
	if mode := os.Getenv(envChild); mode != "" {
		child(mode)
		return
	}
	os.Exit(m.Run())
}

var keep [][]byte

// child runs until its stdin closes. "busy" spins one core and grows its
// resident memory by 8 MiB every 100 ms up to 96 MiB; "idle" waits.
func child(mode string) {
	go func() {
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	if mode == "parent" {
		parent()
	}
	fmt.Println("ready")
	if mode != "busy" {
		select {}
	}
	go func() {
		for range 12 {
			b := make([]byte, 8<<20)
			for i := range b {
				b[i] = byte(i) // touch every page so it is resident
			}
			keep = append(keep, b)
			time.Sleep(100 * time.Millisecond) // pacing the growth
		}
	}()
	var x uint64
	for {
		for i := range 1 << 20 {
			x += uint64(i) * 2654435761
		}
		if x == 42 {
			fmt.Println(x)
		}
	}
}

// parent starts treeWorkers busy children of its own, says "ready" when
// they are, and waits; its children exit when it does (their stdin closes).
func parent() {
	var pids []string
	for range treeWorkers {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), envChild+"=busy")
		if _, err := cmd.StdinPipe(); err != nil {
			panic(err)
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			panic(err)
		}
		if err := cmd.Start(); err != nil {
			panic(err)
		}
		if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
			panic(fmt.Sprintf("worker: %q, %v", line, err))
		}
		pids = append(pids, fmt.Sprint(cmd.Process.Pid))
	}
	fmt.Println("ready " + strings.Join(pids, " "))
	select {}
}

func startChild(t *testing.T, mode string) int {
	pid, _ := startChildLine(t, mode)
	return pid
}

// startChildLine starts a child and returns its pid and the words of its
// "ready" line after the first.
func startChildLine(t *testing.T, mode string) (int, []string) {
	t.Helper()
	pid, line := testchild.Start(t, nil, envChild+"="+mode)
	words := strings.Fields(line)
	if len(words) == 0 || words[0] != "ready" {
		t.Fatalf("child: %q", line)
	}
	return pid, words[1:]
}

func collect(t *testing.T, cfg Config, d time.Duration) (*Probe, []evidence.ProcRecord) {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := run.Create(filepath.Join(t.TempDir(), "run"))
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := p.Run(ctx, dir); err != nil {
		t.Fatalf("Run: %v", err)
	}
	var recs []evidence.ProcRecord
	if err := run.ReadLines(dir.Join(evidence.ProcStream), func(r evidence.ProcRecord) error {
		recs = append(recs, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return p, recs
}

func byRole(recs []evidence.ProcRecord, role string) []evidence.ProcRecord {
	var out []evidence.ProcRecord
	for _, r := range recs {
		if r.Role == role {
			out = append(out, r)
		}
	}
	return out
}

// TestBusyChild watches a child that burns one core and grows its memory,
// an idle child, this process as the load generator, and the machine.
func TestBusyChild(t *testing.T) {
	busy := startChild(t, "busy")
	idle := startChild(t, "idle")
	p, recs := collect(t, Config{
		Processes: []Watch{{PID: busy, Role: evidence.RoleTarget}, {PID: idle, Role: evidence.RoleLoadgen}, Self()},
		Interval:  250 * time.Millisecond,
	}, 1600*time.Millisecond)

	var busyRecs, idleRecs []evidence.ProcRecord
	for _, r := range recs {
		switch r.PID {
		case busy:
			busyRecs = append(busyRecs, r)
		case idle:
			idleRecs = append(idleRecs, r)
		}
	}
	if len(busyRecs) < 4 || len(idleRecs) < 4 {
		t.Fatalf("%d busy and %d idle records in 1.6 s at 4/s", len(busyRecs), len(idleRecs))
	}
	first, last := busyRecs[0].Process, busyRecs[len(busyRecs)-1].Process
	var busyCPU, idleCPU float64
	for i, r := range busyRecs {
		s := r.Process
		if r.Role != evidence.RoleTarget || s == nil || r.T == 0 || r.IntervalMS <= 0 || r.IntervalMS > 1000 {
			t.Fatalf("busy record %d: %+v", i, r)
		}
		busyCPU += s.CPUCores / float64(len(busyRecs))
		if s.CPUCores > float64(runtime.NumCPU())+0.2 {
			t.Errorf("busy record %d: %.2f cores on a %d-core machine", i, s.CPUCores, runtime.NumCPU())
		}
		if s.UserCores < s.SystemCores {
			t.Errorf("busy record %d: user %.2f < system %.2f", i, s.UserCores, s.SystemCores)
		}
		if s.Threads < 2 || s.FDs < 3 || s.FDLimit <= 0 || s.RunQueueWaitPerSec == nil {
			t.Errorf("busy record %d: %+v", i, s)
		}
	}
	if grown := last.RSSBytes - first.RSSBytes; grown < 32<<20 {
		t.Errorf("RSS grew %d bytes (from %d to %d), want >= 32 MiB", grown, first.RSSBytes, last.RSSBytes)
	}
	for i, r := range idleRecs {
		idleCPU += r.Process.CPUCores / float64(len(idleRecs))
		if r.Role != evidence.RoleLoadgen {
			t.Errorf("idle record %d: role %s", i, r.Role)
		}
	}
	// One spinning goroutine wants a whole core; on a shared machine it gets
	// less, but always far more than a process that only waits.
	if busyCPU < 0.1 || idleCPU > 0.05 || busyCPU < 5*idleCPU {
		t.Errorf("mean CPU: busy child %.3f cores, idle child %.3f", busyCPU, idleCPU)
	}
	if self := byRole(recs, evidence.RoleLoadgen); len(self) < len(idleRecs)+4 {
		t.Errorf("no records of this process as load generator")
	}

	machine := byRole(recs, evidence.RoleMachine)
	if len(machine) < 4 {
		t.Fatalf("%d machine records", len(machine))
	}
	for i, r := range machine {
		m := r.Machine
		if m == nil || m.Cores != runtime.NumCPU() || len(m.CPUBusyPerCore) != m.Cores {
			t.Fatalf("machine record %d: %+v", i, m)
		}
		// The busy child alone keeps one of the cores busy.
		if m.CPUBusy < 0.2 || m.CPUBusy > 1 {
			t.Errorf("machine record %d: busy %.2f", i, m.CPUBusy)
		}
		if m.Load1 <= 0 || m.SocketsUsed <= 0 {
			t.Errorf("machine record %d: %+v", i, m)
		}
		if _, err := os.Stat("/proc/pressure/cpu"); err == nil && m.PSI == nil {
			t.Errorf("machine record %d: no PSI though the kernel has it", i)
		}
	}
	if c := p.Coverage(); c.Status != probe.StatusOK || !strings.Contains(c.Detail, fmt.Sprintf("target %d", busy)) {
		t.Errorf("coverage %+v", c)
	}
}

// TestProcessTree watches a parent that only waits while its two children
// burn CPU, once as a tree and once alone: the tree's sample sums the
// children (CPU, threads, memory, descriptors) and lists them; the parent
// alone is idle.
func TestProcessTree(t *testing.T) {
	parentPID, workers := startChildLine(t, "parent")
	if len(workers) != treeWorkers {
		t.Fatalf("parent started %v", workers)
	}
	tree, err := Tree("", parentPID)
	if err != nil || len(tree) != 1+treeWorkers || tree[0] != parentPID {
		t.Fatalf("Tree(%d) = %v, %v; want the parent then %v", parentPID, tree, err, workers)
	}
	for _, w := range workers {
		if !slices.Contains(tree, atoi(t, w)) {
			t.Errorf("Tree(%d) = %v lacks worker %s", parentPID, tree, w)
		}
	}
	p, recs := collect(t, Config{
		Processes: []Watch{
			{PID: parentPID, Role: evidence.RoleProxy, Tree: true, Port: 8080},
			{PID: parentPID, Role: evidence.RoleLoadgen}, // the parent alone
		},
		Interval:  250 * time.Millisecond,
		NoMachine: true,
	}, 1300*time.Millisecond)
	treeRecs, alone := byRole(recs, evidence.RoleProxy), byRole(recs, evidence.RoleLoadgen)
	if len(treeRecs) < 3 || len(alone) < 3 {
		t.Fatalf("%d tree and %d single records in 1.3 s at 4/s", len(treeRecs), len(alone))
	}
	var treeCPU, aloneCPU float64
	for i := range treeRecs {
		s, a := treeRecs[i].Process, alone[i].Process
		treeCPU += s.CPUCores / float64(len(treeRecs))
		aloneCPU += a.CPUCores / float64(len(alone))
		if treeRecs[i].Port != 8080 || s.Processes != 1+treeWorkers || len(s.PIDs) != s.Processes || s.PIDs[0] != parentPID {
			t.Errorf("tree record %d: port %d, %d processes %v", i, treeRecs[i].Port, s.Processes, s.PIDs)
		}
		if a.Processes != 0 || a.PIDs != nil {
			t.Errorf("single record %d lists processes: %d %v", i, a.Processes, a.PIDs)
		}
		// Each member has its own threads, memory, descriptors and limit.
		if s.Threads < (1+treeWorkers)*a.Threads/2 || s.Threads <= a.Threads || s.RSSBytes <= a.RSSBytes || s.FDs <= a.FDs || s.FDLimit < 3*a.FDLimit || s.FDMaxShare <= 0 {
			t.Errorf("tree record %d not a sum: tree %+v, parent %+v", i, s, a)
		}
	}
	// Two spinning children want two cores; on a shared machine they get
	// less, but far more than their parent, which only waits.
	if treeCPU < 0.2 || aloneCPU > 0.05 || treeCPU < 5*aloneCPU {
		t.Errorf("mean CPU: tree %.3f cores, parent alone %.3f", treeCPU, aloneCPU)
	}
	c := p.Coverage()
	if want := fmt.Sprintf("proxy %d", parentPID); !strings.Contains(c.Detail, want) || !strings.Contains(c.Detail, "process tree (up to 3 processes") || !strings.Contains(c.Detail, "on port 8080") {
		t.Errorf("coverage %q lacks %q, the port and the tree", c.Detail, want)
	}
}

// TestSockets: the descriptors that are sockets are counted apart.
func TestSockets(t *testing.T) {
	ln, err := lowport.Listen()
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fds, socks := countFDs(fmt.Sprintf("/proc/%d/fd", os.Getpid()))
	if socks < 2 || fds <= socks {
		t.Errorf("%d descriptors, %d sockets; want at least the listener and the connection, and some files", fds, socks)
	}
	if fds, socks := countFDs(filepath.Join(t.TempDir(), "none")); fds != 0 || socks != 0 {
		t.Errorf("missing directory: %d, %d", fds, socks)
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestGoneProcess: a target that does not exist is reported in coverage,
// and the machine is still sampled.
func TestGoneProcess(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"=idle")
	cmd.Stdin = strings.NewReader("") // exits at once
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	gone := cmd.Process.Pid
	p, recs := collect(t, Config{Processes: []Watch{{PID: gone, Role: evidence.RoleTarget}}, Interval: 100 * time.Millisecond}, 450*time.Millisecond)
	if len(byRole(recs, evidence.RoleTarget)) != 0 || len(byRole(recs, evidence.RoleMachine)) < 2 {
		t.Errorf("records %+v", recs)
	}
	c := p.Coverage()
	if c.Status != probe.StatusError || !strings.Contains(c.Detail, "--pid") {
		t.Errorf("coverage %+v", c)
	}
}

func TestConfig(t *testing.T) {
	for _, bad := range []Config{
		{Processes: []Watch{{PID: 0, Role: evidence.RoleTarget}}},
		{Processes: []Watch{{PID: 1, Role: "db"}}},
		{NoMachine: true},
		{Interval: -time.Second},
	} {
		if _, err := New(bad); err == nil {
			t.Errorf("New(%+v): no error", bad)
		}
	}
	p, err := New(Config{ProcRoot: filepath.Join(t.TempDir(), "nope")})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Run(context.Background(), nil); err == nil || p.Coverage().Status != probe.StatusUnavailable {
		t.Errorf("Run on a missing procfs: %v, %+v", err, p.Coverage())
	}
}

func TestCgroupParsers(t *testing.T) {
	f := func(x float64) *float64 { return &x }
	tests := []struct {
		name    string
		in      string
		want    *float64
		wantErr bool
	}{
		{"unlimited", "max 100000\n", nil, false},
		{"half", "50000 100000\n", f(0.5), false},
		{"two cores", "200000 100000", f(2), false},
		{"default period", "150000", f(1.5), false},
		{"garbage", "lots", nil, true},
		{"zero period", "100 0", nil, true},
		{"empty", "", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseCPUMax(tt.in)
			if (err != nil) != tt.wantErr || (got == nil) != (tt.want == nil) || (got != nil && *got != *tt.want) {
				t.Errorf("parseCPUMax(%q) = %v, %v", tt.in, got, err)
			}
		})
	}
	if q, err := parseV1Quota("-1\n", "100000\n"); err != nil || q != nil {
		t.Errorf("v1 unlimited: %v, %v", q, err)
	}
	if q, err := parseV1Quota("25000\n", "100000\n"); err != nil || q == nil || *q != 0.25 {
		t.Errorf("v1 quarter: %v, %v", q, err)
	}
	st := parseFlatKeyed([]byte("nr_periods 10\nnr_throttled 4\nthrottled_usec 120000\nbad line here\n"))
	if st["nr_periods"] != 10 || st["nr_throttled"] != 4 || st["throttled_usec"] != 120000 {
		t.Errorf("cpu.stat = %v", st)
	}
}

// TestFindCgroup builds v1 and v2 hierarchies in a temporary directory and
// checks the controller is found and read, a container's mount root is
// removed from the path, and v2 wins when it has cpu.max.
func TestFindCgroup(t *testing.T) {
	root := t.TempDir()
	write := func(p, s string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	v1 := filepath.Join(root, "v1cpu")
	write(filepath.Join(v1, "svc", "cpu.cfs_quota_us"), "50000\n")
	write(filepath.Join(v1, "svc", "cpu.cfs_period_us"), "100000\n")
	write(filepath.Join(v1, "svc", "cpu.stat"), "nr_periods 7\nnr_throttled 3\nthrottled_time 2000000000\n")
	v2 := filepath.Join(root, "unified")
	write(filepath.Join(v2, "cpu.max"), "200000 100000\n")
	write(filepath.Join(v2, "cpu.stat"), "usage_usec 1\nnr_periods 9\nnr_throttled 1\nthrottled_usec 500000\n")

	cgs := []procfs.Cgroup{
		{HierarchyID: 3, Controllers: []string{"cpu", "cpuacct"}, Path: "/docker/abc/svc"},
		{HierarchyID: 0, Path: "/docker/abc"},
	}
	v1Mount := &procfs.MountInfo{FSType: "cgroup", Root: "/docker/abc", MountPoint: v1, SuperOptions: map[string]string{"rw": "", "cpu": "", "cpuacct": ""}}
	v2Mount := &procfs.MountInfo{FSType: "cgroup2", Root: "/docker/abc", MountPoint: v2}

	tests := []struct {
		name      string
		mounts    []*procfs.MountInfo
		version   int
		quota     float64
		throttled uint64
		seconds   float64
	}{
		{"v1 only", []*procfs.MountInfo{v1Mount}, 1, 0.5, 3, 2},
		{"v2 preferred", []*procfs.MountInfo{v1Mount, v2Mount}, 2, 2, 1, 0.5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cg, err := findCgroupCPU(cgs, tt.mounts)
			if err != nil {
				t.Fatal(err)
			}
			if cg.version != tt.version {
				t.Fatalf("version %d, want %d (%+v)", cg.version, tt.version, cg)
			}
			r, err := cg.read()
			if err != nil {
				t.Fatal(err)
			}
			if r.quotaCores == nil || *r.quotaCores != tt.quota || r.throttled != tt.throttled || r.throttledS != tt.seconds {
				t.Errorf("read %+v (quota %v)", r, r.quotaCores)
			}
		})
	}
	if _, err := findCgroupCPU(cgs, nil); err == nil {
		t.Error("no mounts: no error")
	}
}

func TestCPUShares(t *testing.T) {
	a := procfs.CPUStat{User: 10, System: 5, Idle: 100, Iowait: 1, Steal: 0}
	b := procfs.CPUStat{User: 11, System: 5.5, Idle: 100.25, Iowait: 1.1, Steal: 0.15}
	busy, steal, iowait := cpuShares(a, b)
	// work = 1 + 0.5 + 0.15 = 1.65; total = 1.65 + 0.25 + 0.1 = 2.0
	if d := busy - 0.825; d > 1e-9 || d < -1e-9 || steal-0.075 > 1e-9 || iowait-0.05 > 1e-9 {
		t.Errorf("busy %v steal %v iowait %v", busy, steal, iowait)
	}
}

// TestTreeFallback: without task/*/children the tree is read from every
// process's parent; comm may hold spaces and parentheses.
func TestTreeFallback(t *testing.T) {
	root := t.TempDir()
	stat := map[int]string{
		10: "10 (master) S 1 10",
		11: "11 (worker (a)) S 10 10",
		12: "12 (w) S 10 10",
		13: "13 (grand child) S 11 10",
		20: "20 (other) S 1 20",
		21: "21 (broken",
	}
	for pid, line := range stat {
		dir := filepath.Join(root, strconv.Itoa(pid))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(line+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		pid  int
		want []int
	}{
		{10, []int{10, 11, 12, 13}},
		{11, []int{11, 13}},
		{20, []int{20}},
	}
	for _, tc := range tests {
		t.Run(strconv.Itoa(tc.pid), func(t *testing.T) {
			got, err := Tree(root, tc.pid)
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("Tree(%d) = %v, %v; want %v", tc.pid, got, err, tc.want)
			}
		})
	}
	if _, err := Tree(root, 99); err == nil {
		t.Errorf("Tree of a missing process: no error")
	}
}
