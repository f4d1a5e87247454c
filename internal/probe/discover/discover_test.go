package discover

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	httppprof "net/http/pprof"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/chokepoint/chokepoint/internal/lowport"
	"github.com/chokepoint/chokepoint/internal/secret"
)

// envChild makes the test binary a child process: "1" serves as the
// discovered target; the roles of upstream_test.go (a backend, a proxy and
// its worker, a service with a dependency) are named there.
const envChild = "CHOKEPOINT_DISCOVER_TEST_CHILD"

func TestMain(m *testing.M) {
	switch role := os.Getenv(envChild); role {
	case "":
		os.Exit(m.Run())
	case "1":
		serveChild()
	default:
		upstreamChild(role)
	}
}

// serveChild is a Go service with pprof and metrics in its own process; it
// prints its URL and serves until stdin closes.
func serveChild() {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", httppprof.Index)
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		io.WriteString(w, "# TYPE go_goroutines gauge\ngo_goroutines 7\n")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	l, err := lowport.Listen()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	go func() {
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	fmt.Println("ready http://" + l.Addr().String() + "/orders?id=1")
	_ = http.Serve(l, mux)
}

func TestDiscoverChild(t *testing.T) {
	target, pid := startRole(t, "1", []string{"--db-password=hunter2", "--dsn", "postgres://app:hunter2@db/shop"})
	r, err := Discover(context.Background(), target, Options{})
	if err != nil {
		t.Fatal(err)
	}
	origin := target[:strings.Index(target, "/orders")]
	if !r.Local || r.PID != pid {
		t.Fatalf("result %+v, want pid %d", r, pid)
	}
	if r.PprofURL != origin+"/debug/pprof" || r.MetricsURL != origin+"/metrics" {
		t.Errorf("pprof %q metrics %q", r.PprofURL, r.MetricsURL)
	}
	if len(r.Processes) != 1 || r.Processes[0].PPID != os.Getpid() || r.Processes[0].Name == "" {
		t.Errorf("processes %+v", r.Processes)
	}
	joined := strings.Join(r.Processes[0].Cmdline, " ")
	if strings.Contains(joined, "hunter2") || !strings.Contains(joined, secret.Redacted) || !strings.Contains(joined, "-test.run") {
		t.Errorf("cmdline %q: password not redacted or arguments lost", joined)
	}
	if s := r.Summary(); !strings.Contains(s, fmt.Sprintf("pid %d", r.PID)) || !strings.Contains(s, "pprof at") {
		t.Errorf("summary %q", s)
	}
}

func TestDiscoverWithoutEndpoints(t *testing.T) {
	srv := lowport.NewServer(t, http.NotFoundHandler())
	r, err := Discover(context.Background(), srv.URL+"/x", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r.PID != os.Getpid() || r.PprofURL != "" || r.MetricsURL != "" || len(r.Notes) != 2 {
		t.Errorf("result %+v", r)
	}
	if s := r.Summary(); !strings.Contains(s, "no pprof") || !strings.Contains(s, "no metrics") {
		t.Errorf("summary %q", s)
	}
}

func TestDiscoverNoListener(t *testing.T) {
	addr, err := lowport.Addr() // free when returned: nothing listens
	if err != nil {
		t.Fatal(err)
	}
	r, err := Discover(context.Background(), "http://"+addr+"/", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Local || r.PID != 0 || r.PprofURL != "" || len(r.Notes) == 0 {
		t.Errorf("result %+v", r)
	}
}

// countingTransport fails the test's expectations if anything is fetched.
type countingTransport struct{ n atomic.Int64 }

func (c *countingTransport) RoundTrip(*http.Request) (*http.Response, error) {
	c.n.Add(1)
	return nil, fmt.Errorf("no request expected")
}

func TestRemoteTargetNotProbed(t *testing.T) {
	ct := &countingTransport{}
	// 192.0.2.0/24 is TEST-NET-1 (RFC 5737): never a local address.
	r, err := Discover(context.Background(), "http://192.0.2.10:8080/", Options{Client: &http.Client{Transport: ct}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Local || r.PID != 0 || r.PprofURL != "" || ct.n.Load() != 0 {
		t.Errorf("remote target probed: %+v, %d requests", r, ct.n.Load())
	}
	if !strings.Contains(r.Summary(), "not on this machine") {
		t.Errorf("summary %q", r.Summary())
	}
}

func TestBadTargets(t *testing.T) {
	for _, bad := range []string{"", "ftp://x/", "127.0.0.1:80", "http://127.0.0.1:99999/", "http://127.0.0.1:0x/"} {
		if _, err := Discover(context.Background(), bad, Options{}); err == nil {
			t.Errorf("Discover(%q): no error", bad)
		}
	}
}

func TestParseNetTCP(t *testing.T) {
	tcp := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0
   1: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 222 1 0000000000000000 100 0 0 10 0
   2: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 333 1 0000000000000000 20 4 30 10 -1
   3: garbage
`
	socks, err := parseNetTCP(strings.NewReader(tcp))
	if err != nil {
		t.Fatal(err)
	}
	if len(socks) != 3 {
		t.Fatalf("%d sockets: %+v", len(socks), socks)
	}
	if s := socks[0]; !s.ip.Equal(net.ParseIP("127.0.0.1")) || s.port != 8080 || s.state != tcpListenState || s.inode != 12345 {
		t.Errorf("socket 0 = %+v", s)
	}
	if s := socks[1]; !s.ip.IsUnspecified() || s.port != 80 {
		t.Errorf("socket 1 = %+v", s)
	}
	tests := []struct {
		in   string
		ip   string
		port int
	}{
		{"00000000000000000000000001000000:1F90", "::1", 8080},
		{"0000000000000000FFFF00000100007F:0050", "127.0.0.1", 80},
		{"00000000000000000000000000000000:01BB", "::", 443},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			ip, port, err := parseHexAddr(tt.in)
			if err != nil || !ip.Equal(net.ParseIP(tt.ip)) || port != tt.port {
				t.Errorf("parseHexAddr = %v, %d, %v; want %s, %d", ip, port, err, tt.ip, tt.port)
			}
		})
	}
	for _, bad := range []string{"", "0100007F", "0100007G:0050", "01:0050", "0100007F:FFFFF"} {
		if _, _, err := parseHexAddr(bad); err == nil {
			t.Errorf("parseHexAddr(%q): no error", bad)
		}
	}
}

func TestRedactArgs(t *testing.T) {
	tests := []struct {
		in, want []string
	}{
		{[]string{"svc", "--port=8080", "--db-password=s3cret"}, []string{"svc", "--port=8080", "--db-password=" + secret.Redacted}},
		{[]string{"svc", "--api-key", "abc", "-v"}, []string{"svc", "--api-key", secret.Redacted, "-v"}},
		{[]string{"svc", "--token", "--verbose"}, []string{"svc", "--token", "--verbose"}},
		{[]string{"svc", "--db=postgres://app:pw@db:5432/shop"}, []string{"svc", "--db=postgres://app:" + secret.Redacted + "@db:5432/shop"}},
		{[]string{"svc", "host=db user=app password=pw dbname=shop"}, []string{"svc", "host=db user=app password=" + secret.Redacted + " dbname=shop"}},
		{[]string{"svc", "-config", "/etc/svc.yaml"}, []string{"svc", "-config", "/etc/svc.yaml"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.in, " "), func(t *testing.T) {
			if got := RedactArgs(tt.in); !slices.Equal(got, tt.want) {
				t.Errorf("RedactArgs = %q, want %q", got, tt.want)
			}
		})
	}
}
