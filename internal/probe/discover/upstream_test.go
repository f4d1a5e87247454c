package discover

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	httppprof "net/http/pprof"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chokepoint/chokepoint/internal/lowport"
	"github.com/chokepoint/chokepoint/internal/testchild"
)

// Environment of the upstream test children.
const (
	envUpstream  = "CHOKEPOINT_DISCOVER_TEST_UPSTREAM"  // the origin a proxy or service calls
	envKeepAlive = "CHOKEPOINT_DISCOVER_TEST_KEEPALIVE" // "1": the proxy keeps upstream connections
)

// upstreamChild runs one role of the upstream tests until stdin closes,
// after printing "ready ORIGIN":
//   - backend: a Go service (orders as JSON, pprof, metrics, and /hits, how
//     many order requests it served);
//   - pricing: a dependency serving only /price;
//   - proxy: a pre-fork reverse proxy: it listens and hands the socket to a
//     proxy-worker child that forwards everything to $envUpstream, with or
//     without kept-alive upstream connections;
//   - service: serves orders itself, calling $envUpstream/price for each
//     (and once at start, so a kept-alive connection is open).
func upstreamChild(role string) {
	go func() {
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, role+":", err)
		os.Exit(1)
	}
	var ln net.Listener
	var err error
	if role == "proxy-worker" {
		ln, err = net.FileListener(os.NewFile(3, "listener"))
	} else {
		ln, err = lowport.Listen()
	}
	if err != nil {
		fail(err)
	}
	origin := "http://" + ln.Addr().String()
	up, _ := url.Parse(os.Getenv(envUpstream))
	var h http.Handler
	switch role {
	case "backend":
		var hits atomic.Int64
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", httppprof.Index)
		mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "# TYPE go_goroutines gauge\ngo_goroutines 7\n")
		})
		mux.HandleFunc("/orders", func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"orders":[{"id":1,"sku":"AB-12"},{"id":2,"sku":"CD-34"}]}`)
		})
		mux.HandleFunc("/hits", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, hits.Load()) })
		h = mux
	case "pricing":
		mux := http.NewServeMux()
		mux.HandleFunc("/price", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "9.99") })
		h = mux
	case "service":
		client := &http.Client{}
		price := func() error {
			resp, err := client.Get(up.String() + "/price")
			if err != nil {
				return err
			}
			io.Copy(io.Discard, resp.Body)
			return resp.Body.Close()
		}
		if err := price(); err != nil {
			fail(err)
		}
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if err := price(); err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"orders":[{"id":1,"sku":"AB-12"},{"id":2,"sku":"CD-34"}]}`)
		})
	case "silent":
		// Another protocol: accepts and waits for bytes it never answers.
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go io.Copy(io.Discard, c)
			}
		}()
		fmt.Println("ready " + origin)
		select {}
	case "holder":
		// A service holding a connection to a local listener of another
		// protocol (a database, a cache).
		c, err := net.Dial("tcp", up.Host)
		if err != nil {
			fail(err)
		}
		defer c.Close()
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	case "proxy":
		// The master holds the socket and does no work, like nginx's.
		f, err := ln.(*net.TCPListener).File()
		if err != nil {
			fail(err)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), envChild+"=proxy-worker")
		cmd.ExtraFiles = []*os.File{f}
		cmd.Stderr = os.Stderr
		if _, err := cmd.StdinPipe(); err != nil { // closes when the master exits
			fail(err)
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			fail(err)
		}
		if err := cmd.Start(); err != nil {
			fail(err)
		}
		if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || !strings.HasPrefix(line, "ready ") {
			fail(fmt.Errorf("worker: %q, %v", line, err))
		}
		fmt.Println("ready " + origin)
		select {}
	case "proxy-worker":
		rp := httputil.NewSingleHostReverseProxy(up)
		rp.Transport = &http.Transport{Proxy: nil, DisableKeepAlives: os.Getenv(envKeepAlive) != "1"}
		h = rp
	default:
		fail(fmt.Errorf("unknown role"))
	}
	fmt.Println("ready " + origin)
	_ = http.Serve(ln, h)
}

// startRole starts the test binary in a role, with more arguments, and
// returns what it said after "ready" (its URL) and its pid; it is stopped
// when the test ends.
func startRole(t *testing.T, role string, args []string, env ...string) (string, int) {
	t.Helper()
	pid, line := testchild.Start(t, args, append([]string{envChild + "=" + role}, env...)...)
	origin, ok := strings.CutPrefix(line, "ready ")
	if !ok {
		t.Fatalf("%s: %q", role, line)
	}
	return origin, pid
}

// hits is how many order requests the backend has served.
func hits(t *testing.T, backend string) int {
	t.Helper()
	resp, err := http.Get(backend + "/hits")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	n, err := strconv.Atoi(string(b))
	if err != nil {
		t.Fatalf("hits %q: %v", b, err)
	}
	return n
}

// TestDiscoverBehindProxy: a pre-fork reverse proxy (a master that only
// holds the socket, a worker that forwards) in front of a Go backend is
// seen through: the master is the process on the port, its tree holds the
// worker, the backend is the upstream that answers the target's request
// the same way, and pprof and metrics are taken on the backend's own port.
// A service calling a dependency on this machine is not a proxy, and a
// passive discovery sends nothing to the target's path.
func TestDiscoverBehindProxy(t *testing.T) {
	backend, backendPID := startRole(t, "backend", nil)
	pricing, pricingPID := startRole(t, "pricing", nil)
	tests := []struct {
		name      string
		role      string
		env       []string
		prime     bool // one request through the front first
		passive   bool
		backend   bool   // want the backend found behind the front
		maxOrders int    // order requests discovery may send to the backend
		upstream  int    // pid of the upstream wanted first (0: none)
		path      string // the target's path and query ("" = /orders?id=1)
	}{
		// nginx's default: a new upstream connection per request, none
		// open between requests: found while discovery's own requests
		// are in flight.
		{name: "proxy, a connection per request", role: "proxy", env: []string{envUpstream + "=" + backend}, backend: true, maxOrders: burstRequests + 1, upstream: backendPID},
		// Kept-alive upstream connections are seen at once: two requests,
		// the front's answer and the backend's.
		{name: "proxy, kept-alive", role: "proxy", env: []string{envUpstream + "=" + backend, envKeepAlive + "=1"}, prime: true, backend: true, maxOrders: 1 + 2, upstream: backendPID},
		{name: "dry run", role: "proxy", env: []string{envUpstream + "=" + backend}, passive: true},
		// A path the backend does not serve proves nothing: a proxy and a
		// service calling a dependency both answer 404.
		{name: "proxy, a path not served", role: "proxy", env: []string{envUpstream + "=" + backend}, path: "/"},
		{name: "service with a dependency", role: "service", env: []string{envUpstream + "=" + pricing}, upstream: pricingPID},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			front, frontPID := startRole(t, tc.role, nil, tc.env...)
			before := hits(t, backend)
			if tc.prime {
				resp, err := http.Get(front + "/orders?id=1")
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			path := tc.path
			if path == "" {
				path = "/orders?id=1"
			}
			r, err := Discover(context.Background(), front+path, Options{Passive: tc.passive})
			if err != nil {
				t.Fatal(err)
			}
			sent := hits(t, backend) - before
			t.Logf("summary: %s; notes %q; %d order requests reached the backend", r.Summary(), r.Notes, sent)
			if r.PID != frontPID {
				t.Fatalf("pid %d, want the front's %d (processes %+v)", r.PID, frontPID, r.Processes)
			}
			if tc.role == "proxy" && (len(r.Tree) != 2 || r.Tree[0] != frontPID) {
				t.Errorf("tree %v, want the master %d and its worker", r.Tree, frontPID)
			}
			if sent > tc.maxOrders {
				t.Errorf("%d order requests reached the backend, want at most %d", sent, tc.maxOrders)
			}
			if tc.upstream != 0 {
				if len(r.Upstreams) == 0 || r.Upstreams[0].PID != tc.upstream {
					t.Errorf("upstreams %+v, want pid %d first", r.Upstreams, tc.upstream)
				}
			}
			if !tc.backend {
				if r.Backend != nil {
					t.Errorf("backend %+v, want none", *r.Backend)
				}
				if strings.Contains(r.PprofURL, backend) {
					t.Errorf("pprof %q taken on the backend's port without a backend", r.PprofURL)
				}
				return
			}
			b := r.Backend
			if b == nil {
				t.Fatalf("no backend; upstreams %+v", r.Upstreams)
			}
			if b.PID != backendPID || "http://"+b.Addr != backend || b.Name() == "" || b.Conns < 1 {
				t.Errorf("backend %+v, want pid %d at %s", *b, backendPID, backend)
			}
			if r.PprofURL != backend+"/debug/pprof" || r.MetricsURL != backend+"/metrics" {
				t.Errorf("pprof %q, metrics %q: want them on the backend's own port %s", r.PprofURL, r.MetricsURL, backend)
			}
			if s := r.Summary(); !strings.Contains(s, fmt.Sprintf("forwards the target's requests to pid %d", backendPID)) || !strings.Contains(s, "2 processes") {
				t.Errorf("summary %q", s)
			}
		})
	}
}

// TestDiscoverSilentUpstream: a listener that never answers HTTP is asked
// the target's request for a bounded time, not targetTimeout.
func TestDiscoverSilentUpstream(t *testing.T) {
	silent, silentPID := startRole(t, "silent", nil)
	front, _ := startRole(t, "holder", nil, envUpstream+"="+silent)
	start := time.Now()
	r, err := Discover(context.Background(), front+"/", Options{Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	t.Logf("summary: %s (in %v)", r.Summary(), took)
	if len(r.Upstreams) != 1 || r.Upstreams[0].PID != silentPID || r.Backend != nil || !strings.HasPrefix(r.Upstreams[0].Answer, "no HTTP answer") {
		t.Errorf("upstreams %+v, backend %v: want the silent listener, not answering", r.Upstreams, r.Backend)
	}
	if took >= targetTimeout/2 {
		t.Errorf("discovery took %v with a silent upstream", took)
	}
}

// TestScanUpstreamsNoTree: a tree that cannot be read holds no
// connections.
func TestScanUpstreamsNoTree(t *testing.T) {
	ups, err := scanUpstreams("/proc", []int{1 << 30}, os.Getpid(), func(net.IP) bool { return true })
	if err != nil || len(ups) != 0 {
		t.Errorf("upstreams of a missing process: %+v, %v", ups, err)
	}
}

func TestAnswerSame(t *testing.T) {
	page := answer{status: 200, ctype: "application/json", size: 1000}
	tests := []struct {
		name string
		b    answer
		want bool
	}{
		{"same", page, true},
		{"a little longer", answer{status: 200, ctype: "application/json", size: 1500}, true},
		{"another status", answer{status: 404, ctype: "application/json", size: 1000}, false},
		{"another type", answer{status: 200, ctype: "text/html", size: 1000}, false},
		{"much shorter", answer{status: 200, ctype: "application/json", size: 20}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := page.same(tc.b); got != tc.want {
				t.Errorf("same(%+v) = %v", tc.b, got)
			}
		})
	}
	if !(answer{status: 200, ctype: "text/plain", size: 2}).same(answer{status: 200, ctype: "text/plain", size: 40}) {
		t.Errorf("short bodies differ")
	}
	if !slices.Contains([]bool{page.ok()}, true) || (answer{status: 502}).ok() {
		t.Errorf("ok()")
	}
}

// FuzzParseNetTCP: any /proc/net/tcp-like input parses without panic, into
// sockets with whole addresses and ports in range.
func FuzzParseNetTCP(f *testing.F) {
	f.Add("  sl  local_address rem_address   st\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1\n")
	f.Add("h\n 1: 0000000000000000FFFF00000100007F:0050 0000000000000000FFFF00000100007F:D431 01 0:0 0:0 0 0 0 7\n")
	f.Add("h\n 2: 0100007F:FFFF 0100007F:zz 06 x x x x x 0\n")
	f.Fuzz(func(t *testing.T, in string) {
		socks, _ := parseNetTCP(strings.NewReader(in))
		for _, s := range socks {
			if (len(s.ip) != 4 && len(s.ip) != 16) || (len(s.rip) != 4 && len(s.rip) != 16) {
				t.Fatalf("address lengths %d, %d", len(s.ip), len(s.rip))
			}
			if s.port < 0 || s.port > 65535 || s.rport < 0 || s.rport > 65535 {
				t.Fatalf("ports %d, %d", s.port, s.rport)
			}
		}
	})
}
