// Package discover finds, for a target on this machine, the process
// listening on its port and whether it serves Go's pprof handlers and
// Prometheus metrics, so a hunt can probe it without flags. Targets on other
// machines are never probed here.
package discover

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/chokepoint/chokepoint/internal/probe/promscrape"
	"github.com/chokepoint/chokepoint/internal/secret"
)

// DefaultTimeout bounds each HTTP check: a local endpoint that takes longer
// than two seconds to answer its index would also slow every scrape.
const DefaultTimeout = 2 * time.Second

// maxCheckBody bounds what is read of an answer while checking it; a pprof
// index is a few KiB, and a metrics page is parsed only far enough to tell
// it is one.
const maxCheckBody = 4 << 20

// maxNetFile bounds /proc/net/tcp{,6}: ~150 bytes a socket, so 64 MiB is
// over 400,000 sockets.
const maxNetFile = 64 << 20

// Options configures Discover. The zero value is ready to use.
type Options struct {
	ProcRoot string        // "/proc"
	Client   *http.Client  // nil: a client without proxies
	Timeout  time.Duration // per HTTP check (DefaultTimeout)
	// Passive sends nothing to the target's own URL (a dry run): the
	// upstreams of the process on its port are then only those it is
	// connected to already, and none is checked to be its backend.
	Passive bool
}

// Process is one process holding the target's listening socket.
type Process struct {
	PID     int      `json:"pid"`
	PPID    int      `json:"ppid"`
	Name    string   `json:"name"`
	Cmdline []string `json:"cmdline"` // secrets redacted
}

// Result is what was found for one target.
type Result struct {
	URL   string `json:"url"`
	Host  string `json:"host"`
	Port  int    `json:"port"`
	Local bool   `json:"local"` // the host is a loopback or local address
	// PID is the process serving the port (the parent when workers share
	// the socket); 0 when not found. Processes lists every holder.
	PID       int       `json:"pid,omitempty"`
	Processes []Process `json:"processes,omitempty"`
	// Tree is PID and its descendants (a pre-fork server's master and
	// workers), PID first.
	Tree []int `json:"tree,omitempty"`
	// Upstreams are the listeners on this machine the tree holds outgoing
	// connections to, most connections first; Backend, when not nil, is
	// the one that answers the target's request as the target's port does:
	// the process on the port is a reverse proxy and Backend serves.
	Upstreams []Upstream `json:"upstreams,omitempty"`
	Backend   *Upstream  `json:"backend,omitempty"`
	// FrontAnswer is what the target's port answered the target's request
	// when upstreams were compared with it.
	FrontAnswer string `json:"front_answer,omitempty"`
	// PprofURL and MetricsURL are where Go's pprof index and Prometheus
	// text answer: on the backend's own port when there is a backend and
	// they answer there, else through the target's origin.
	PprofURL   string `json:"pprof_url,omitempty"`
	MetricsURL string `json:"metrics_url,omitempty"`
	// Notes say what was looked for and not found, and why.
	Notes []string `json:"notes,omitempty"`
}

// Summary is one line for people and for coverage details.
func (r Result) Summary() string {
	if !r.Local {
		return fmt.Sprintf("%s is not on this machine: nothing discovered (pass --pid, --pprof, --metrics)", r.Host)
	}
	var parts []string
	if r.PID > 0 {
		name := ""
		for _, p := range r.Processes {
			if p.PID == r.PID {
				name = p.Name
			}
		}
		parts = append(parts, fmt.Sprintf("pid %d (%s) listens on port %d", r.PID, name, r.Port))
		if len(r.Tree) > 1 {
			parts = append(parts, fmt.Sprintf("its process tree has %d processes", len(r.Tree)))
		}
		if b := r.Backend; b != nil {
			parts = append(parts, fmt.Sprintf("it forwards the target's requests to pid %d (%s) on port %d (same answer there)", b.PID, b.Name(), b.Port))
		} else if len(r.Upstreams) > 0 {
			why := "none answers the target's request as its port does"
			if r.FrontAnswer != "" {
				why += ": " + r.FrontAnswer
			}
			parts = append(parts, "connected to local listeners on "+upstreamSummary(r.Upstreams)+" ("+why+")")
		}
	} else {
		parts = append(parts, fmt.Sprintf("no process found listening on port %d", r.Port))
	}
	if r.PprofURL != "" {
		parts = append(parts, "pprof at "+r.PprofURL)
	} else {
		parts = append(parts, "no pprof")
	}
	if r.MetricsURL != "" {
		parts = append(parts, "metrics at "+r.MetricsURL)
	} else {
		parts = append(parts, "no metrics")
	}
	return strings.Join(parts, "; ")
}

// Discover looks for the target's process and endpoints. An error means the
// target URL is unusable; everything not found is a note.
func Discover(ctx context.Context, target string, opt Options) (Result, error) {
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Result{}, fmt.Errorf("discover: target %q: want an http(s) URL", target)
	}
	port := 80
	if u.Scheme == "https" {
		port = 443
	}
	if p := u.Port(); p != "" {
		port, err = strconv.Atoi(p)
		if err != nil || port <= 0 || port > 65535 {
			return Result{}, fmt.Errorf("discover: target %q: bad port", target)
		}
	}
	r := Result{URL: target, Host: u.Hostname(), Port: port}
	if opt.ProcRoot == "" {
		opt.ProcRoot = "/proc"
	}
	if opt.Timeout <= 0 {
		opt.Timeout = DefaultTimeout
	}
	if opt.Client == nil {
		opt.Client = &http.Client{Transport: &http.Transport{Proxy: nil}}
	}

	ips, local, isLocal, err := localAddrs(ctx, r.Host)
	if err != nil {
		r.Notes = append(r.Notes, err.Error())
	}
	r.Local = local
	if !local {
		return r, nil
	}

	procs, err := listeners(opt.ProcRoot, ips, port)
	if err != nil {
		r.Notes = append(r.Notes, err.Error())
	}
	r.Processes = procs
	r.PID = mainPID(procs)
	if r.PID == 0 && err == nil {
		r.Notes = append(r.Notes, fmt.Sprintf("no readable process listens on port %d (another user's process needs root to be seen)", port))
	}

	if r.PID > 0 {
		r.Tree = treeOf(opt.ProcRoot, r.PID)
		ups, front, err := findUpstreams(ctx, opt, u, r.Tree, isLocal)
		if err != nil {
			r.Notes = append(r.Notes, "upstreams: "+err.Error())
		}
		if front.status != 0 {
			r.FrontAnswer = front.String()
		}
		r.Upstreams = ups
		for i := range ups {
			if ups[i].Backend {
				r.Backend = &r.Upstreams[i]
				break
			}
		}
		if opt.Passive && len(ups) > 0 {
			r.Notes = append(r.Notes, "connected to local listeners on "+upstreamSummary(ups)+"; whether one is a backend behind a proxy is checked only when the hunt runs")
		}
	}

	// pprof and metrics: the backend's own port first (they describe the
	// process that serves, and a proxy's limits do not cut them off),
	// then the target's origin.
	origins := []string{u.Scheme + "://" + u.Host}
	if r.Backend != nil {
		origins = append([]string{"http://" + r.Backend.Addr}, origins...)
	}
	var perr, merr []string
	for _, origin := range origins {
		if r.PprofURL == "" {
			if err := checkPprof(ctx, opt, origin+"/debug/pprof/"); err != nil {
				perr = append(perr, err.Error())
			} else {
				r.PprofURL = origin + "/debug/pprof"
			}
		}
		if r.MetricsURL == "" {
			if err := checkMetrics(ctx, opt, origin+"/metrics"); err != nil {
				merr = append(merr, err.Error())
			} else {
				r.MetricsURL = origin + "/metrics"
			}
		}
	}
	if r.PprofURL == "" {
		r.Notes = append(r.Notes, "pprof: "+strings.Join(perr, "; "))
	}
	if r.MetricsURL == "" {
		r.Notes = append(r.Notes, "metrics: "+strings.Join(merr, "; "))
	}
	return r, nil
}

// localAddrs resolves host and reports whether it is this machine: a
// loopback, unspecified or local interface address. isLocal tells the same
// of any address.
func localAddrs(ctx context.Context, host string) ([]net.IP, bool, func(net.IP) bool, error) {
	ifaddrs, _ := net.InterfaceAddrs()
	isLocal := func(ip net.IP) bool {
		if ip.IsLoopback() || ip.IsUnspecified() {
			return true
		}
		for _, a := range ifaddrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
				return true
			}
		}
		return false
	}
	var ips []net.IP
	if ip := net.ParseIP(host); ip != nil {
		ips = []net.IP{ip}
	} else {
		addrs, err := net.DefaultResolver.LookupIPAddr(ctx, host)
		if err != nil {
			return nil, false, isLocal, fmt.Errorf("resolve %s: %w", host, err)
		}
		for _, a := range addrs {
			ips = append(ips, a.IP)
		}
	}
	for _, ip := range ips {
		if isLocal(ip) {
			return ips, true, isLocal, nil
		}
	}
	return ips, false, isLocal, nil
}

// tcpListenState is TCP_LISTEN in /proc/net/tcp's "st" column.
const tcpListenState = "0A"

// listenInodes returns the socket inodes listening on port at one of ips
// or a wildcard address, from /proc/net/tcp and tcp6.
func listenInodes(procRoot string, ips []net.IP, port int) (map[uint64]bool, error) {
	socks, err := readSockets(procRoot)
	if err != nil {
		return nil, err
	}
	inodes := map[uint64]bool{}
	for _, s := range socks {
		if s.state != tcpListenState || s.port != port {
			continue
		}
		if s.ip.IsUnspecified() || matches(s.ip, ips) {
			inodes[s.inode] = true
		}
	}
	return inodes, nil
}

// readSockets reads every TCP socket of /proc/net/tcp and tcp6; an error
// means neither could be read.
func readSockets(procRoot string) ([]socket, error) {
	var all []socket
	var errs []error
	read := 0
	for _, name := range []string{"tcp", "tcp6"} {
		f, err := os.Open(filepath.Join(procRoot, "net", name))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		socks, err := parseNetTCP(io.LimitReader(f, maxNetFile))
		f.Close()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		read++
		all = append(all, socks...)
	}
	if read == 0 {
		return nil, fmt.Errorf("read sockets: %w", errors.Join(errs...))
	}
	return all, nil
}

func matches(ip net.IP, ips []net.IP) bool {
	for _, t := range ips {
		if ip.Equal(t) {
			return true
		}
	}
	return false
}

// socket is one line of /proc/net/tcp{,6}.
type socket struct {
	ip    net.IP
	port  int
	rip   net.IP // remote address; unspecified for a listener
	rport int
	state string
	inode uint64
}

// parseNetTCP reads /proc/net/tcp or tcp6. Lines it cannot read are
// skipped.
func parseNetTCP(r io.Reader) ([]socket, error) {
	var out []socket
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	first := true
	for sc.Scan() {
		if first { // header
			first = false
			continue
		}
		f := strings.Fields(sc.Text())
		if len(f) < 10 {
			continue
		}
		ip, port, err := parseHexAddr(f[1])
		if err != nil {
			continue
		}
		rip, rport, err := parseHexAddr(f[2])
		if err != nil {
			continue
		}
		inode, err := strconv.ParseUint(f[9], 10, 64)
		if err != nil {
			continue
		}
		out = append(out, socket{ip: ip, port: port, rip: rip, rport: rport, state: f[3], inode: inode})
	}
	return out, sc.Err()
}

// parseHexAddr decodes "0100007F:1F90" (IPv4) or a 32-digit IPv6 address:
// the kernel prints each 32-bit word in host (little-endian) order.
func parseHexAddr(s string) (net.IP, int, error) {
	h, p, ok := strings.Cut(s, ":")
	if !ok || (len(h) != 8 && len(h) != 32) {
		return nil, 0, fmt.Errorf("bad address %q", s)
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return nil, 0, fmt.Errorf("bad port in %q", s)
	}
	ip := make(net.IP, len(h)/2)
	for w := 0; w < len(h)/8; w++ {
		v, err := strconv.ParseUint(h[w*8:w*8+8], 16, 32)
		if err != nil {
			return nil, 0, fmt.Errorf("bad address %q", s)
		}
		ip[w*4], ip[w*4+1], ip[w*4+2], ip[w*4+3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
	}
	return ip, int(port), nil
}

// listeners finds the processes holding a listening socket on port.
func listeners(procRoot string, ips []net.IP, port int) ([]Process, error) {
	inodes, err := listenInodes(procRoot, ips, port)
	if err != nil || len(inodes) == 0 {
		return nil, err
	}
	owners, err := socketOwners(procRoot, inodes)
	byPID := map[int]Process{}
	for _, procs := range owners {
		for _, p := range procs {
			byPID[p.PID] = p
		}
	}
	out := make([]Process, 0, len(byPID))
	for _, p := range byPID {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PID < out[j].PID })
	return out, err
}

func socketInode(link string) (uint64, bool) {
	s, ok := strings.CutPrefix(link, "socket:[")
	if !ok {
		return 0, false
	}
	s, ok = strings.CutSuffix(s, "]")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

// maxProcFile bounds /proc/PID/cmdline and stat reads.
const maxProcFile = 1 << 20

func readProcFile(p string) []byte {
	f, err := os.Open(p)
	if err != nil {
		return nil
	}
	defer f.Close()
	b, _ := io.ReadAll(io.LimitReader(f, maxProcFile))
	return b
}

func describe(procRoot string, pid int) Process {
	p := Process{PID: pid}
	dir := filepath.Join(procRoot, strconv.Itoa(pid))
	p.Name = strings.TrimSpace(string(readProcFile(filepath.Join(dir, "comm"))))
	if st := readProcFile(filepath.Join(dir, "stat")); st != nil {
		// "pid (comm) state ppid ...": comm may hold spaces and parentheses.
		if i := bytes.LastIndexByte(st, ')'); i >= 0 {
			f := strings.Fields(string(st[i+1:]))
			if len(f) >= 2 {
				p.PPID, _ = strconv.Atoi(f[1])
			}
		}
	}
	if cl := readProcFile(filepath.Join(dir, "cmdline")); len(cl) > 0 {
		args := strings.Split(strings.TrimRight(string(cl), "\x00"), "\x00")
		p.Cmdline = RedactArgs(args)
	}
	return p
}

// mainPID picks the process serving the port: the only holder, or the one
// whose parent does not hold the socket (a pre-fork server's master).
func mainPID(procs []Process) int {
	if len(procs) == 0 {
		return 0
	}
	holders := map[int]bool{}
	for _, p := range procs {
		holders[p.PID] = true
	}
	for _, p := range procs {
		if !holders[p.PPID] {
			return p.PID
		}
	}
	return procs[0].PID
}

// secretArgWords mark command-line flags whose values are credentials, in
// addition to the header words of secret.IsSensitiveHeader.
var secretArgWords = []string{"pass", "pwd", "dsn", "credential", "private"}

func secretFlag(name string) bool {
	n := strings.ToLower(strings.TrimLeft(name, "-"))
	if n == "" {
		return false
	}
	if secret.IsSensitiveHeader(n) {
		return true
	}
	for _, w := range secretArgWords {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// RedactArgs removes credentials from another program's command line:
// values of flags named like secrets (--password=x, --api-key x), passwords
// in URLs and in key=value connection strings.
func RedactArgs(args []string) []string {
	out := make([]string, len(args))
	redactNext := false
	for i, a := range args {
		switch {
		case redactNext && !strings.HasPrefix(a, "-"):
			out[i] = secret.Redacted
			redactNext = false
			continue
		case redactNext:
			redactNext = false
		}
		out[i] = redactValue(a)
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name, _, hasVal := strings.Cut(a, "=")
		if !secretFlag(name) {
			continue
		}
		if hasVal {
			out[i] = name + "=" + secret.Redacted
		} else {
			redactNext = true
		}
	}
	return out
}

// redactValue redacts passwords inside one argument: URL userinfo and
// "password=" pairs (secret.DSN handles both forms).
func redactValue(a string) string {
	lower := strings.ToLower(a)
	if strings.Contains(a, "://") && strings.Contains(a, "@") {
		if i := strings.Index(a, "://"); i >= 0 {
			// Keep a flag prefix ("--db=") outside the URL.
			start := strings.LastIndexAny(a[:i], "= ") + 1
			return a[:start] + secret.DSN(a[start:])
		}
	}
	if strings.Contains(lower, "password=") || strings.Contains(lower, "password =") {
		return secret.DSN(a)
	}
	return a
}

// checkPprof fetches the pprof index and checks it is Go's.
func checkPprof(ctx context.Context, opt Options, u string) error {
	body, _, err := fetch(ctx, opt, u, "")
	if err != nil {
		return err
	}
	if !bytes.Contains(body, []byte("goroutine")) || !bytes.Contains(body, []byte("heap")) {
		return fmt.Errorf("%s answers but is not Go's net/http/pprof index", u)
	}
	return nil
}

// checkMetrics fetches the metrics page and checks it parses with at least
// one family.
func checkMetrics(ctx context.Context, opt Options, u string) error {
	body, ct, err := fetch(ctx, opt, u, "text/plain;version=0.0.4;q=1,application/openmetrics-text;version=1.0.0;q=0.5")
	if err != nil {
		return err
	}
	fams, _, err := promscrape.Parse(bytes.NewReader(body), ct)
	if err != nil {
		return fmt.Errorf("%s is not Prometheus text: %w", u, err)
	}
	if len(fams) == 0 {
		return fmt.Errorf("%s has no metrics", u)
	}
	return nil
}

func fetch(ctx context.Context, opt Options, u, accept string) ([]byte, string, error) {
	ctx, cancel := context.WithTimeout(ctx, opt.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, "", err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := opt.Client.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, "", fmt.Errorf("%s: HTTP %d", u, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxCheckBody+1))
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", u, err)
	}
	if len(body) > maxCheckBody {
		return nil, "", fmt.Errorf("%s: answer over %d bytes", u, maxCheckBody)
	}
	return body, resp.Header.Get("Content-Type"), nil
}
