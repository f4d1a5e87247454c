package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/chokepoint/chokepoint/examples/zoo"
	"github.com/chokepoint/chokepoint/internal/lowport"
	"github.com/chokepoint/chokepoint/internal/report"
)

// Shapes beyond one Go service with one fault (issue 6): two bottlenecks at
// once, and a reverse proxy in front of the service with the limit in the
// proxy or behind it. docs/shapes.md describes each shape and what its
// evidence looked like.

// twoFaults is one two-bottleneck shape: the zoo runs both modes at once
// and the hunt loads the union of their paths. limiting caps the capacity;
// lesser is a real problem that does not.
type twoFaults struct {
	limiting, lesser string
	why              string // why limiting limits and lesser does not
	// lesserShare repeats the lesser mode's URLs this many times in the
	// load (0 or 1: once, an even mix), for a lesser problem whose
	// evidence grows with the requests it serves.
	lesserShare int
	maxDuration time.Duration // 0: hunt's default
	knownGap    string        // non-empty: a diagnosis gap recorded in the issue notes; skipped
}

var twoFaultShapes = []twoFaults{
	{
		limiting: zoo.CPUHotPath, lesser: zoo.DownstreamSerial,
		why: "search burns ~2.5 ms of CPU per request on a 2-core machine; the cart quote waits 5 x 3 ms on pricing one call after another, which costs latency but no CPU",
	},
	{
		limiting: zoo.DBMissingIndex, lesser: zoo.DBNPlusOne,
		why: "order history scans 200,000 orders per request (~12 ms of database CPU); recent orders issue one primary-key query per order, cheap for the database but many round trips per request",
	},
	{
		limiting: zoo.LockContention, lesser: zoo.MemoryLeak,
		why: "quotes hold one mutex across a 3 ms pricing call (about 330 quotes/s at most); every order response is kept forever (~4 KiB each), which grows the heap but costs no throughput within a hunt",
		// The lock caps the whole mix near 600 req/s when half of it is
		// quotes; three orders per quote serve enough orders in a short hunt
		// for the leak (~4 KiB retained per order) to clear the memory.leak
		// rule's 4 MiB floor.
		lesserShare: 3,
	},
}

// TestShapesTwoBottlenecks hunts the zoo with two bottlenecks switched on:
// the one that limits capacity must come first as the principal (critical)
// finding and be what capacity is limited by; the other must be reported as
// a lesser (major or minor) finding with its own locus.
func TestShapesTwoBottlenecks(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end hunts are not short; run without -short")
	}
	for _, s := range twoFaultShapes {
		t.Run(s.limiting+"+"+s.lesser, func(t *testing.T) {
			if s.knownGap != "" && os.Getenv("CHOKEPOINT_E2E_ALL") != "1" {
				t.Skipf("known diagnosis gap: %s (CHOKEPOINT_E2E_ALL=1 runs it)", s.knownGap)
			}
			machineLock(t)
			checkTwoFaults(t, s)
		})
	}
}

func checkTwoFaults(t *testing.T, s twoFaults) {
	t.Logf("shape: %s", s.why)
	modes := []string{s.limiting, s.lesser}
	var pg string
	for _, name := range modes {
		if m, _ := zoo.LookupMode(name); m.NeedsDB {
			pg = zooDSN(t)
		}
	}
	otlpAddr, err := lowport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	p := startZooModes(t, modes, false, "http://"+otlpAddr)
	urls := modeURLs(p.URL(), modes...)
	les, _ := zoo.LookupMode(s.lesser)
	for range s.lesserShare - 1 {
		urls = append(urls, modePaths(p.URL(), les.Paths)...)
	}
	rep := hunt(t, urls, huntOpts{postgres: pg, otlp: otlpAddr, maxDuration: s.maxDuration})
	logReport(t, rep)

	lim, _ := zoo.LookupMode(s.limiting)
	if len(rep.Findings) == 0 {
		t.Fatalf("no finding (limited_by %s); want %s first and %s after it; ruled out: %v", rep.Capacity.LimitedBy, s.limiting, s.lesser, rep.RuledOut)
	}
	first := rep.Findings[0]
	if first.Kind != s.limiting {
		t.Errorf("first finding %s (%s, %q), want %s: the bottleneck that limits capacity must come first; %s ruled out: %s", first.Kind, first.Severity, first.Title, s.limiting, s.limiting, ruledOut(rep, s.limiting))
	} else {
		if first.Severity != report.SeverityCritical {
			t.Errorf("principal finding %s has severity %s, want critical", first.Kind, first.Severity)
		}
		if ok, why := locusMatches(lim.Truth, first.Locus); !ok {
			t.Errorf("principal finding's locus: %s", why)
		}
	}
	if rep.Capacity.LimitedBy != s.limiting {
		t.Errorf("capacity limited_by %s, want %s", rep.Capacity.LimitedBy, s.limiting)
	}
	i := slices.IndexFunc(rep.Findings, func(f report.Finding) bool { return f.Kind == s.lesser })
	if i < 0 {
		t.Errorf("no %s finding for the lesser problem; findings %s; ruled out: %s", s.lesser, kinds(rep.Findings), ruledOut(rep, s.lesser))
		return
	}
	f := rep.Findings[i]
	if i == 0 {
		t.Errorf("the lesser problem %s comes first", s.lesser)
	}
	if f.Severity != report.SeverityMajor && f.Severity != report.SeverityMinor {
		t.Errorf("lesser finding %s has severity %s, want major or minor (impact %.3f)", f.Kind, f.Severity, f.Impact)
	}
	// A lesser finding must name what CONTRACT.md §5 asks of its kind; an
	// endpoint it cannot tie to the cause (a heap site, a hot function) may
	// be left out, but one it names must be right.
	truth := les.Truth
	if f.Locus.Endpoint == "" {
		truth.Endpoint = ""
	}
	if ok, why := locusMatches(truth, f.Locus); !ok {
		t.Errorf("lesser finding's locus: %s", why)
	}
}

// TestShapesProxy hunts the zoo behind nginx, started by the test with its
// own configuration. Discovery on the front port finds nginx's master and
// follows its upstream connections to the zoo: the zoo becomes the target
// (its /proc, its pprof and metrics on its own port) and nginx's process
// tree is watched as the proxy. With the limit in the proxy (a connection
// cap of a few requests in front of a healthy zoo), the finding must name
// nginx; with the limit behind it (a zoo bottleneck), the finding must name
// the real cause behind the proxy.
func TestShapesProxy(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end hunts are not short; run without -short")
	}
	bin := nginxBinary(t)
	t.Run("limit-in-proxy", func(t *testing.T) {
		machineLock(t)
		checkProxyLimit(t, bin)
	})
	t.Run("limit-behind-proxy", func(t *testing.T) {
		machineLock(t)
		checkBehindProxy(t, bin)
	})
}

// proxyWorkerConnections is nginx's worker_connections in the proxy-limit
// case: the listening socket takes one and each proxied request two (client
// and upstream), so (8-1)/2 = 3 requests in flight at most. Behind it the
// healthy zoo's quote waits ~3 ms on pricing, so the cap lies near
// 3/4 ms ≈ 750 req/s and connections are reset from about 500 req/s
// (measured: none at 400 req/s, 9% at 700 req/s), far below what the zoo
// itself serves (thousands per second).
const proxyWorkerConnections = 8

// proxyRequestCap is how many requests the capped nginx serves at once.
const proxyRequestCap = (proxyWorkerConnections - 1) / 2

// zooQuoteFloor is the least a healthy quote takes: the pricing call's
// 3 ms (examples/zoo pricing.go, pricingLatency). With proxyRequestCap
// requests in flight the proxy cannot pass more than cap/floor per second.
const zooQuoteFloor = 3 * time.Millisecond

// roomyWorkerConnections is worker_connections of the proxy that is not the
// limit: far above anything a hunt on this machine keeps open.
const roomyWorkerConnections = 1024

func checkProxyLimit(t *testing.T, bin string) {
	// The healthy zoo; its quote endpoint waits on pricing (no CPU, no
	// database).
	p := startZooModes(t, nil, false, "")
	m, _ := zoo.LookupMode(zoo.LockContention)
	front := startNginx(t, bin, "nginx-connection-cap.conf", p.URL(), proxyWorkerConnections)
	rep := hunt(t, modePaths(front.url, m.Paths), huntOpts{maxRate: 3000})
	logReport(t, rep)
	t.Logf("nginx master pid %d; zoo pid %d", front.pid, p.Pid())
	checkSeenThrough(t, rep, front, p)

	if len(rep.Findings) == 0 {
		t.Fatalf("no finding (limited_by %s); want net.connection-limit or concurrency.limit naming nginx; ruled out: %v", rep.Capacity.LimitedBy, rep.RuledOut)
	}
	f := rep.Findings[0]
	if f.Kind != "net.connection-limit" && f.Kind != "concurrency.limit" {
		t.Fatalf("first finding %s (%s, %q), want net.connection-limit or concurrency.limit naming nginx; ruled out: net.connection-limit: %s; concurrency.limit: %s",
			f.Kind, f.Severity, f.Title, ruledOut(rep, "net.connection-limit"), ruledOut(rep, "concurrency.limit"))
	}
	if f.Locus.Process != "nginx" {
		t.Errorf("locus.process %q, want nginx: the limit sits in the proxy, not the zoo (title %q)", f.Locus.Process, f.Title)
	}
	if f.Severity != report.SeverityCritical {
		t.Errorf("severity %s, want critical", f.Severity)
	}
	if rep.Capacity.LimitedBy != f.Kind {
		t.Errorf("limited_by %s, want %s", rep.Capacity.LimitedBy, f.Kind)
	}
	if f.Locus.Function != "" {
		t.Errorf("locus.function %q: the limit is not in the zoo's code", f.Locus.Function)
	}
	if mx := rep.Capacity.MaxRPS; mx != nil {
		if ceiling := float64(proxyRequestCap) / zooQuoteFloor.Seconds(); *mx > ceiling {
			t.Errorf("max_rps %.0f above what %d requests in flight of at least %v pass (%.0f req/s): the hunt measured something other than the proxy's cap", *mx, proxyRequestCap, zooQuoteFloor, ceiling)
		}
	}
	for _, g := range rep.Findings {
		if g.Severity == report.SeverityCritical && g.Locus.Process == "" && g.Kind != f.Kind {
			t.Errorf("a critical %s finding blames the healthy zoo: %s", g.Kind, g.Title)
		}
	}
}

func checkBehindProxy(t *testing.T, bin string) {
	mode := zoo.DBMissingIndex
	m, _ := zoo.LookupMode(mode)
	pg := zooDSN(t)
	otlpAddr, err := lowport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	p := startZooModes(t, []string{mode}, false, "http://"+otlpAddr)
	front := startNginx(t, bin, "nginx-proxy.conf", p.URL(), roomyWorkerConnections)
	// No --pid, --pprof or --metrics: discovery finds the zoo behind nginx.
	rep := hunt(t, modePaths(front.url, m.Paths), huntOpts{postgres: pg, otlp: otlpAddr})
	logReport(t, rep)
	t.Logf("nginx master pid %d; zoo pid %d", front.pid, p.Pid())
	checkSeenThrough(t, rep, front, p)
	if len(rep.Findings) == 0 {
		t.Fatalf("no finding (limited_by %s); want %s; ruled out: %v", rep.Capacity.LimitedBy, mode, rep.RuledOut)
	}
	f := rep.Findings[0]
	if f.Kind != mode {
		t.Fatalf("first finding %s (%s, %q), want %s behind the proxy; ruled out: %s", f.Kind, f.Severity, f.Title, mode, ruledOut(rep, mode))
	}
	if ok, why := locusMatches(m.Truth, f.Locus); !ok {
		t.Errorf("locus: %s", why)
	}
	if f.Locus.Process != "" {
		t.Errorf("locus.process %q: the limit is behind the proxy, in the zoo's database", f.Locus.Process)
	}
	if rep.Capacity.LimitedBy != mode {
		t.Errorf("limited_by %s, want %s", rep.Capacity.LimitedBy, mode)
	}
	for _, g := range rep.Findings {
		if g.Locus.Process == "nginx" && (g.Severity == report.SeverityCritical || g.Severity == report.SeverityMajor) {
			t.Errorf("a %s %s finding blames the proxy, which has room to spare: %s", g.Severity, g.Kind, g.Title)
		}
	}
}

// checkSeenThrough checks that discovery saw through the proxy: the zoo
// behind nginx is the target, with pprof and metrics on its own port, and
// nginx's master and worker are watched as the proxy in front of it.
func checkSeenThrough(t *testing.T, rep *report.Report, front nginxProc, zooProc *zoo.Process) {
	t.Helper()
	disc := ""
	for _, n := range rep.Notes {
		if strings.HasPrefix(n, "discovery: ") {
			disc = n
		}
	}
	if want := "pprof at " + zooProc.URL() + "/debug/pprof"; !strings.Contains(disc, want) {
		t.Errorf("%q: want %q, the zoo's own port rather than through nginx", disc, want)
	}
	if rep.Target.PID != zooProc.Pid() {
		t.Errorf("report target pid %d, want the zoo's %d, found behind nginx (%d)", rep.Target.PID, zooProc.Pid(), front.pid)
	}
	for _, c := range rep.Coverage {
		switch c.Source {
		case "proc":
			proxy := fmt.Sprintf("proxy %d (nginx)", front.pid)
			if !strings.Contains(c.Detail, proxy) || !strings.Contains(c.Detail, "process tree (up to 2 processes") || !strings.Contains(c.Detail, fmt.Sprintf("target %d", zooProc.Pid())) {
				t.Errorf("proc coverage %q: want the zoo as target and %s summed over nginx's master and worker", c.Detail, proxy)
			}
		case "pprof", "metrics":
			if c.Status != "ok" {
				t.Errorf("%s coverage %s: %s", c.Source, c.Status, c.Detail)
			}
		}
	}
}

// startZooModes runs the zoo with the given modes (nil: healthy) in a
// process of its own; it is stopped when the test ends.
func startZooModes(t *testing.T, modes []string, fixed bool, otlp string) *zoo.Process {
	t.Helper()
	cfg := zoo.Config{Bottlenecks: modes, Fixed: fixed, OTLPEndpoint: otlp}
	for _, name := range modes {
		m, ok := zoo.LookupMode(name)
		if !ok {
			t.Fatalf("no zoo mode %q", name)
		}
		if m.NeedsDB {
			cfg.DSN = zooDSN(t)
		}
	}
	stderr := &lockedWriter{w: new(bytes.Buffer)}
	p, err := zoo.StartProcess(context.Background(), os.Args[0], cfg, stderr)
	if err != nil {
		t.Fatalf("start zoo %v: %v\n%s", modes, err, stderrText(stderr))
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		p.Close(ctx)
	})
	return p
}

// modeURLs is the union of the modes' load URLs on base, in order.
func modeURLs(base string, modes ...string) []string {
	var out []string
	for _, name := range modes {
		m, _ := zoo.LookupMode(name)
		for _, u := range modePaths(base, m.Paths) {
			if !slices.Contains(out, u) {
				out = append(out, u)
			}
		}
	}
	return out
}

func modePaths(base string, paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = base + p
	}
	return out
}

// logReport logs what a shape's verdict rests on: capacity, findings with
// their first evidence, and the coverage.
func logReport(t *testing.T, rep *report.Report) {
	t.Helper()
	c := rep.Capacity
	t.Logf("capacity: max_rps %s, first_failing_rps %s, limited_by %s", rateText(c.MaxRPS), rateText(c.FirstFailingRPS), c.LimitedBy)
	for _, f := range rep.Findings {
		ev := ""
		if len(f.Evidence) > 0 {
			e := f.Evidence[0]
			ev = fmt.Sprintf("; %s %s = %g %s", e.Source, e.What, e.Value, e.Unit)
		}
		t.Logf("finding %s (%s, impact %.3f, confidence %.2f) locus %+v: %s%s", f.Kind, f.Severity, f.Impact, f.Confidence, f.Locus, f.Title, ev)
	}
	for _, cv := range rep.Coverage {
		t.Logf("coverage %s: %s (%s)", cv.Source, cv.Status, cv.Detail)
	}
}

// ruledOut is why the rule of kind did not fire, or that it did not say.
func ruledOut(rep *report.Report, kind string) string {
	for _, r := range rep.RuledOut {
		if r.Kind == kind {
			return r.Why
		}
	}
	return "(not in ruled_out)"
}

// nginxBinary finds nginx: skipped when missing outside CI, a failure in CI
// (scripts/install-deps.sh installs it).
func nginxBinary(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/sbin/nginx"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	p, err := exec.LookPath("nginx")
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("nginx is needed for the proxy shapes in CI (scripts/install-deps.sh installs nginx-light): %v", err)
	}
	t.Skipf("nginx not installed (apt-get install -y nginx-light): %v", err)
	return ""
}

// nginxReady bounds nginx's start.
const nginxReady = 10 * time.Second

// nginxStderrMax bounds what is kept of nginx's error log: past a
// connection cap it writes one alert per refused connection.
const nginxStderrMax = 256 << 10

type nginxProc struct {
	url string // http://127.0.0.1:port
	pid int    // the master process
}

// startNginx runs nginx in the foreground with testdata/<conf> rendered for
// a temporary prefix directory, a free low port and upstream (the zoo's
// base URL), and waits until it proxies /health. It is stopped when the
// test ends.
func startNginx(t *testing.T, bin, conf, upstream string, workerConnections int) nginxProc {
	t.Helper()
	tmpl, err := template.ParseFiles(filepath.Join("testdata", conf))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// nginx started by root runs its worker as nobody, which must reach
	// the prefix directory.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	addr, err := lowport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	err = tmpl.Execute(&b, struct {
		Dir, Listen, Upstream string
		WorkerConnections     int
	}{dir, addr, strings.TrimPrefix(upstream, "http://"), workerConnections})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	stderr := &cappedWriter{max: nginxStderrMax}
	cmd := exec.Command(bin, "-p", dir, "-e", "stderr", "-c", "nginx.conf",
		"-g", "daemon off; pid "+filepath.Join(dir, "nginx.pid")+"; error_log stderr;")
	cmd.Stderr = stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nginx: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(nginxReady):
			cmd.Process.Kill()
			<-done
		}
	})
	url := "http://" + addr
	ctx, cancel := context.WithTimeout(context.Background(), nginxReady)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/health", nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				client.CloseIdleConnections()
				return nginxProc{url: url, pid: cmd.Process.Pid}
			}
		}
		select {
		case err := <-done:
			done <- err
			t.Fatalf("nginx exited before serving: %v\n%s", err, stderr.String())
		case <-ctx.Done():
			t.Fatalf("nginx did not proxy %s/health within %v\n%s", url, nginxReady, stderr.String())
		case <-tick.C:
		}
	}
}

// cappedWriter keeps the first max bytes written to it and counts the rest.
type cappedWriter struct {
	mu      sync.Mutex
	max     int
	b       bytes.Buffer
	dropped int
}

func (c *cappedWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if room := c.max - c.b.Len(); room > 0 {
		c.b.Write(p[:min(len(p), room)])
		c.dropped += max(0, len(p)-room)
	} else {
		c.dropped += len(p)
	}
	return len(p), nil
}

func (c *cappedWriter) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dropped > 0 {
		return fmt.Sprintf("%s\n(%d more bytes)", c.b.String(), c.dropped)
	}
	return c.b.String()
}
