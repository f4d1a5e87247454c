// Command driver runs chokepoint load side by side with other load tools
// against one local server, the tools pinned to one core and the server to
// another, and prints what each cost and reported. bench/load/run.sh builds
// everything and calls it; docs/performance.md records its results.
//
// Every number that compares tools is measured the same way for all: CPU
// is the tool process's own rusage (user + system, all threads), and the
// requests counted are those the server answered (GET /__stats), not what
// each tool says it sent. Latency is what each tool reports.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

type config struct {
	bin      string // directory holding chokepoint, server and the anchors
	tmp      string
	addr     string // the server's listen address
	duration time.Duration
	repeat   int
	genCPU   string // taskset CPU list for the tools
	srvCPU   string // and for the server
	only     map[string]bool
	tools    map[string]bool
}

// outcome is one tool's run.
type outcome struct {
	tool     string
	served   int64         // requests the server answered
	cpu      time.Duration // the tool's user + system CPU
	wall     time.Duration
	p50, p99 time.Duration // as the tool reports (0: not reported)
	max      time.Duration
	err      error
}

func (o outcome) cpuPerReq() float64 {
	if o.served == 0 {
		return 0
	}
	return float64(o.cpu.Microseconds()) / float64(o.served)
}

func main() {
	var c config
	var only, tools string
	flag.StringVar(&c.bin, "bin", "", "directory with chokepoint, server, and the anchor tools")
	flag.StringVar(&c.addr, "addr", "127.0.0.1:20081", "server address (port below 32768)")
	flag.DurationVar(&c.duration, "duration", 10*time.Second, "length of each measurement")
	flag.IntVar(&c.repeat, "repeat", 1, "runs per tool and test (the median is kept)")
	flag.StringVar(&c.genCPU, "gen-cpu", "0", "CPUs for the load tools (taskset list; empty: no pinning)")
	flag.StringVar(&c.srvCPU, "srv-cpu", "1", "CPUs for the server")
	flag.StringVar(&only, "only", "", "comma-separated tests to run (cpu10k, closed50, rate20k, sleep10ms, stall); default all")
	flag.StringVar(&tools, "tools", "", "comma-separated tools to run; default all found")
	flag.Parse()
	c.only, c.tools = set(only), set(tools)
	tmp, err := os.MkdirTemp("", "chokepoint-bench-")
	if err != nil {
		fatal(err)
	}
	defer os.RemoveAll(tmp)
	c.tmp = tmp
	ctx := context.Background()
	fmt.Printf("# chokepoint load bench: %s per run, median of %d, tools on CPU %q, server on CPU %q\n", c.duration, c.repeat, c.genCPU, c.srvCPU)
	fmt.Printf("# tools: %s\n\n", strings.Join(c.available(), ", "))

	for _, t := range tests {
		if len(c.only) > 0 && !c.only[t.name] {
			continue
		}
		fmt.Printf("## %s: %s\n", t.name, t.title)
		srv, err := c.startServer(ctx, t.serverArgs...)
		if err != nil {
			fatal(err)
		}
		var rows []outcome
		for _, tool := range t.tools {
			if !c.has(tool) {
				continue
			}
			var runs []outcome
			for range c.repeat {
				runs = append(runs, c.run(ctx, t, tool))
			}
			rows = append(rows, median(runs))
		}
		srv.stop()
		t.print(&c, rows)
		fmt.Println()
	}
}

func set(list string) map[string]bool {
	m := map[string]bool{}
	for _, s := range strings.Split(list, ",") {
		if s = strings.TrimSpace(s); s != "" {
			m[s] = true
		}
	}
	return m
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "driver:", err)
	os.Exit(1)
}

// median keeps the run with the median CPU per request (failed runs last).
func median(runs []outcome) outcome {
	sort.SliceStable(runs, func(i, j int) bool {
		if (runs[i].err == nil) != (runs[j].err == nil) {
			return runs[i].err == nil
		}
		return runs[i].cpuPerReq() < runs[j].cpuPerReq()
	})
	ok := 0
	for _, r := range runs {
		if r.err == nil {
			ok++
		}
	}
	if ok == 0 {
		return runs[0]
	}
	return runs[(ok-1)/2]
}

var allTools = []string{"chokepoint", "wrk", "bombardier", "hey", "vegeta", "fortio", "k6"}

func (c *config) path(tool string) string {
	if p := filepath.Join(c.bin, tool); fileExists(p) {
		return p
	}
	if p, err := exec.LookPath(tool); err == nil {
		return p
	}
	return ""
}

func (c *config) has(tool string) bool {
	if len(c.tools) > 0 && !c.tools[tool] {
		return false
	}
	return c.path(tool) != ""
}

func (c *config) available() []string {
	var out []string
	for _, t := range allTools {
		if c.has(t) {
			out = append(out, t)
		}
	}
	return out
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

type server struct {
	cmd  *exec.Cmd
	addr string
}

func (c *config) startServer(ctx context.Context, args ...string) (*server, error) {
	argv := append([]string{filepath.Join(c.bin, "server"), "-addr", c.addr}, args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	if c.srvCPU != "" {
		cmd = exec.CommandContext(ctx, "taskset", append([]string{"-c", c.srvCPU}, argv...)...)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start server: %w", err)
	}
	s := &server{cmd: cmd, addr: c.addr}
	for range 100 {
		if conn, err := net.DialTimeout("tcp", c.addr, 100*time.Millisecond); err == nil {
			conn.Close()
			s.served() // reset the count
			return s, nil
		}
		time.Sleep(50 * time.Millisecond) // polling a port that has no signal to wait on
	}
	s.stop()
	return nil, errors.New("server did not start listening")
}

func (s *server) stop() {
	s.cmd.Process.Signal(syscall.SIGTERM)
	s.cmd.Wait()
}

// served returns the requests answered since the last call.
func (s *server) served() int64 {
	resp, err := http.Get("http://" + s.addr + "/__stats")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64))
	n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n
}

// test is one measurement, run for each tool that supports it.
type test struct {
	name, title string
	serverArgs  []string
	rate        int // requests/s; 0 for closed loop
	conns       int
	tools       []string
	print       func(c *config, rows []outcome)
}

var tests = []test{
	{
		name: "cpu10k", title: "CPU time per request at a fixed 10,000 req/s",
		rate: 10000, conns: 50,
		tools: []string{"chokepoint", "bombardier", "hey", "vegeta", "fortio", "k6"},
		print: printCPU,
	},
	{
		name: "closed50", title: "maximum closed-loop throughput with 50 connections",
		rate: 0, conns: 50,
		tools: []string{"chokepoint", "wrk", "bombardier", "hey", "vegeta", "fortio", "k6"},
		print: printThroughput,
	},
	{
		name: "rate20k", title: "achieved-rate accuracy at 20,000 req/s",
		rate: 20000, conns: 100,
		tools: []string{"chokepoint", "bombardier", "hey", "vegeta", "fortio", "k6"},
		print: printAccuracy,
	},
	{
		name: "sleep10ms", title: "p50/p99 against a server answering in 10 ms, 1,000 req/s",
		serverArgs: []string{"-sleep", "10ms"},
		rate:       1000, conns: 50,
		tools: []string{"chokepoint", "wrk", "bombardier", "hey", "vegeta", "fortio", "k6"},
		print: printLatency,
	},
	{
		name: "stall", title: "a 1 s server stall 3 s into the run, 1,000 req/s (the truth: p99 ≈ 0.9 s)",
		serverArgs: []string{"-stall-at", "3s", "-stall-for", "1s"},
		rate:       1000, conns: 50,
		tools: []string{"chokepoint", "wrk", "bombardier", "hey", "vegeta", "fortio", "k6"},
		print: printLatency,
	},
}

// run runs one tool for test t and measures it.
func (c *config) run(ctx context.Context, t test, tool string) outcome {
	srv := &server{addr: c.addr}
	srv.served() // reset
	url := "http://" + c.addr + "/"
	secs := strconv.Itoa(int(c.duration.Seconds()))
	out := filepath.Join(c.tmp, tool+".out")
	os.Remove(out)
	var argv []string
	var parse func(stdout []byte) (p50, p99, max time.Duration, err error)
	switch tool {
	case "chokepoint":
		dir := filepath.Join(c.tmp, fmt.Sprintf("run-%d", time.Now().UnixNano()))
		argv = []string{c.path(tool), "load", url, "--duration", c.duration.String(), "--out", dir, "--format", "json"}
		if t.rate > 0 {
			argv = append(argv, "--rate", strconv.Itoa(t.rate))
		} else {
			argv = append(argv, "--concurrency", strconv.Itoa(t.conns))
		}
		parse = parseChokepoint
	case "wrk":
		if t.rate > 0 && t.name != "sleep10ms" && t.name != "stall" {
			return outcome{tool: tool, err: errors.New("no fixed-rate mode")}
		}
		// wrk has no rate: in the latency tests it runs closed-loop on 10
		// connections, roughly 1,000 req/s against the 10 ms server.
		conns := t.conns
		if t.rate > 0 {
			conns = 10
		}
		argv = []string{c.path(tool), "-t1", "-c" + strconv.Itoa(conns), "-d" + secs + "s", "--latency", url}
		parse = parseWrk
	case "bombardier":
		argv = []string{c.path(tool), "-c", strconv.Itoa(t.conns), "-d", c.duration.String(), "-l", "-p", "r", "-o", "json", url}
		if t.rate > 0 {
			argv = append(argv, "-r", strconv.Itoa(t.rate))
		}
		parse = parseBombardier
	case "hey":
		argv = []string{c.path(tool), "-z", c.duration.String(), "-c", strconv.Itoa(t.conns)}
		if t.rate > 0 {
			argv = append(argv, "-q", strconv.Itoa(t.rate/t.conns)) // hey's -q is per worker
		}
		argv = append(argv, url)
		parse = parseHey
	case "vegeta":
		targets := filepath.Join(c.tmp, "targets")
		os.WriteFile(targets, []byte("GET "+url+"\n"), 0o644)
		rate := strconv.Itoa(t.rate)
		argv = []string{c.path(tool), "attack", "-targets", targets, "-duration", c.duration.String(), "-output", out}
		if t.rate > 0 {
			argv = append(argv, "-rate", rate)
		} else {
			argv = append(argv, "-rate", "0", "-max-workers", strconv.Itoa(t.conns), "-workers", strconv.Itoa(t.conns))
		}
		parse = func([]byte) (time.Duration, time.Duration, time.Duration, error) {
			rep, err := exec.CommandContext(ctx, c.path(tool), "report", "-type", "json", out).Output()
			if err != nil {
				return 0, 0, 0, err
			}
			return parseVegeta(rep)
		}
	case "fortio":
		qps := strconv.Itoa(t.rate)
		if t.rate == 0 {
			qps = "-1"
		}
		argv = []string{c.path(tool), "load", "-qps", qps, "-c", strconv.Itoa(t.conns), "-t", c.duration.String(), "-p", "50,99", "-json", out, "-quiet", url}
		parse = func([]byte) (time.Duration, time.Duration, time.Duration, error) {
			b, err := os.ReadFile(out)
			if err != nil {
				return 0, 0, 0, err
			}
			return parseFortio(b)
		}
	case "k6":
		script := filepath.Join(c.tmp, "k6.js")
		os.WriteFile(script, []byte(k6Script(url, t.rate, t.conns, c.duration)), 0o644)
		argv = []string{c.path(tool), "run", "--quiet", "--no-color", "--summary-trend-stats", "med,p(99),max", "--summary-export", out, script}
		parse = func([]byte) (time.Duration, time.Duration, time.Duration, error) {
			b, err := os.ReadFile(out)
			if err != nil {
				return 0, 0, 0, err
			}
			return parseK6(b)
		}
	default:
		return outcome{tool: tool, err: errors.New("unknown tool")}
	}
	if c.genCPU != "" {
		argv = append([]string{"taskset", "-c", c.genCPU}, argv...)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	o := outcome{tool: tool, wall: time.Since(start), served: srv.served()}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		o.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	var ee *exec.ExitError
	if err != nil && !(tool == "chokepoint" && errors.As(err, &ee) && ee.ExitCode() == 1) {
		o.err = fmt.Errorf("%v: %s", err, firstLine(stderr.String()))
		return o
	}
	o.p50, o.p99, o.max, o.err = parse(stdout.Bytes())
	return o
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

func k6Script(url string, rate, vus int, d time.Duration) string {
	scenario := fmt.Sprintf(`{executor: 'constant-vus', vus: %d, duration: '%ds'}`, vus, int(d.Seconds()))
	if rate > 0 {
		scenario = fmt.Sprintf(`{executor: 'constant-arrival-rate', rate: %d, timeUnit: '1s', duration: '%ds', preAllocatedVUs: %d, maxVUs: %d}`,
			rate, int(d.Seconds()), vus, vus*10)
	}
	return fmt.Sprintf(`import http from 'k6/http';
export const options = {discardResponseBodies: true, scenarios: {s: %s}};
export default function () { http.get('%s'); }
`, scenario, url)
}

func parseChokepoint(b []byte) (p50, p99, max time.Duration, err error) {
	var s struct {
		Latency struct{ P50, P99, Max float64 } `json:"latency_ms"`
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return 0, 0, 0, fmt.Errorf("chokepoint output: %w", err)
	}
	return ms(s.Latency.P50), ms(s.Latency.P99), ms(s.Latency.Max), nil
}

func ms(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }

var wrkPct = regexp.MustCompile(`(?m)^\s+(50|99)(?:\.000)?%\s+([0-9.]+)(us|ms|s)\s*$`)
var wrkMax = regexp.MustCompile(`(?m)^\s+Latency\s+\S+\s+\S+\s+([0-9.]+)(us|ms|s)`)

func parseWrk(b []byte) (p50, p99, max time.Duration, err error) {
	unit := func(v, u string) time.Duration {
		f, _ := strconv.ParseFloat(v, 64)
		switch u {
		case "us":
			return time.Duration(f * float64(time.Microsecond))
		case "ms":
			return ms(f)
		}
		return time.Duration(f * float64(time.Second))
	}
	for _, m := range wrkPct.FindAllStringSubmatch(string(b), -1) {
		if m[1] == "50" {
			p50 = unit(m[2], m[3])
		} else {
			p99 = unit(m[2], m[3])
		}
	}
	if m := wrkMax.FindStringSubmatch(string(b)); m != nil {
		max = unit(m[1], m[2])
	}
	if p50 == 0 {
		err = errors.New("no latency in wrk output")
	}
	return
}

func parseBombardier(b []byte) (p50, p99, max time.Duration, err error) {
	var s struct {
		Result struct {
			Latency struct {
				Max         float64            `json:"max"`
				Percentiles map[string]float64 `json:"percentiles"`
			} `json:"latency"`
		} `json:"result"`
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return 0, 0, 0, fmt.Errorf("bombardier output: %w", err)
	}
	us := func(v float64) time.Duration { return time.Duration(v * float64(time.Microsecond)) }
	l := s.Result.Latency
	return us(l.Percentiles["50"]), us(l.Percentiles["99"]), us(l.Max), nil
}

var heyPct = regexp.MustCompile(`(?m)^\s+(50|99)%+ in ([0-9.]+) secs`)
var heySlowest = regexp.MustCompile(`(?m)^\s+Slowest:\s+([0-9.]+) secs`)

func parseHey(b []byte) (p50, p99, max time.Duration, err error) {
	secs := func(v string) time.Duration {
		f, _ := strconv.ParseFloat(v, 64)
		return time.Duration(f * float64(time.Second))
	}
	for _, m := range heyPct.FindAllStringSubmatch(string(b), -1) {
		if m[1] == "50" {
			p50 = secs(m[2])
		} else {
			p99 = secs(m[2])
		}
	}
	if m := heySlowest.FindStringSubmatch(string(b)); m != nil {
		max = secs(m[1])
	}
	if p50 == 0 {
		err = errors.New("no latency in hey output")
	}
	return
}

func parseVegeta(b []byte) (p50, p99, max time.Duration, err error) {
	var s struct {
		Latencies struct {
			P50 int64 `json:"50th"`
			P99 int64 `json:"99th"`
			Max int64 `json:"max"`
		} `json:"latencies"`
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return 0, 0, 0, fmt.Errorf("vegeta report: %w", err)
	}
	return time.Duration(s.Latencies.P50), time.Duration(s.Latencies.P99), time.Duration(s.Latencies.Max), nil
}

func parseFortio(b []byte) (p50, p99, max time.Duration, err error) {
	var s struct {
		DurationHistogram struct {
			Max         float64
			Percentiles []struct{ Percentile, Value float64 }
		}
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return 0, 0, 0, fmt.Errorf("fortio output: %w", err)
	}
	sec := func(v float64) time.Duration { return time.Duration(v * float64(time.Second)) }
	for _, p := range s.DurationHistogram.Percentiles {
		switch p.Percentile {
		case 50:
			p50 = sec(p.Value)
		case 99:
			p99 = sec(p.Value)
		}
	}
	return p50, p99, sec(s.DurationHistogram.Max), nil
}

func parseK6(b []byte) (p50, p99, max time.Duration, err error) {
	var s struct {
		Metrics map[string]map[string]float64 `json:"metrics"`
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return 0, 0, 0, fmt.Errorf("k6 summary: %w", err)
	}
	d := s.Metrics["http_req_duration"]
	return ms(d["med"]), ms(d["p(99)"]), ms(d["max"]), nil
}

// Printing.

func table(rows []outcome, header string, row func(o outcome) string) {
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, o := range rows {
		if o.err != nil {
			fmt.Fprintf(tw, "%s\tfailed: %v\n", o.tool, o.err)
			continue
		}
		fmt.Fprintln(tw, o.tool+"\t"+row(o))
	}
	tw.Flush()
}

func find(rows []outcome, tool string) (outcome, bool) {
	for _, o := range rows {
		if o.tool == tool && o.err == nil {
			return o, true
		}
	}
	return outcome{}, false
}

func printCPU(c *config, rows []outcome) {
	ours, ok := find(rows, "chokepoint")
	table(rows, "tool\treq/s served\tCPU µs/req\tvs chokepoint", func(o outcome) string {
		ratio := "-"
		if ok && ours.cpuPerReq() > 0 {
			ratio = fmt.Sprintf("%.2fx", o.cpuPerReq()/ours.cpuPerReq())
		}
		return fmt.Sprintf("%.0f\t%.1f\t%s", float64(o.served)/c.duration.Seconds(), o.cpuPerReq(), ratio)
	})
}

func printThroughput(c *config, rows []outcome) {
	ours, ok := find(rows, "chokepoint")
	table(rows, "tool\treq/s served\tCPU µs/req\tchokepoint / tool", func(o outcome) string {
		rps := float64(o.served) / c.duration.Seconds()
		ratio := "-"
		if ok && o.served > 0 {
			ratio = fmt.Sprintf("%.2fx", float64(ours.served)/float64(o.served))
		}
		return fmt.Sprintf("%.0f\t%.1f\t%s", rps, o.cpuPerReq(), ratio)
	})
}

func printAccuracy(c *config, rows []outcome) {
	want := 20000 * c.duration.Seconds()
	table(rows, "tool\tserved\tof 20,000/s\terror", func(o outcome) string {
		return fmt.Sprintf("%d\t%.0f/s\t%+.2f%%", o.served, float64(o.served)/c.duration.Seconds(), (float64(o.served)/want-1)*100)
	})
}

func printLatency(c *config, rows []outcome) {
	table(rows, "tool\treq/s served\tp50\tp99\tmax", func(o outcome) string {
		return fmt.Sprintf("%.0f\t%s\t%s\t%s", float64(o.served)/c.duration.Seconds(), fmtDur(o.p50), fmtDur(o.p99), fmtDur(o.max))
	})
}

func fmtDur(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
}
