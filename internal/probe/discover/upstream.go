package discover

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/chokepoint/chokepoint/internal/probe/proc"
)

// Upstream is a listener on this machine that the target's process tree
// holds outgoing TCP connections to: a database, a dependency, or — for a
// reverse proxy — the backend it forwards requests to.
type Upstream struct {
	Addr string `json:"addr"` // host:port as connected to
	Port int    `json:"port"`
	// PID is the listener's process (the parent when workers share the
	// socket); 0 when it cannot be read (another user's, without root).
	PID       int       `json:"pid,omitempty"`
	Processes []Process `json:"processes,omitempty"`
	Conns     int       `json:"conns"` // connections from the tree to it when seen
	// Backend: it answered the target's request as the target's port did
	// (the same success status, content type and about the same length),
	// so it is what the process on the target's port forwards to.
	Backend bool `json:"backend,omitempty"`
	// Answer is what it answered the target's request ("HTTP 200
	// application/json, 58 bytes", "no HTTP answer (…)"; "" when not asked).
	Answer string `json:"answer,omitempty"`
}

// Name is the listener's process name, "" when unknown.
func (u Upstream) Name() string {
	for _, p := range u.Processes {
		if p.PID == u.PID {
			return p.Name
		}
	}
	return ""
}

// TCP states in /proc/net/tcp's "st" column of an outgoing connection.
const (
	tcpEstablished = "01"
	tcpSynSent     = "02"
)

// maxUpstreams bounds the listeners followed from one tree: a proxy
// forwards to a few backends; a service talks to a few dependencies.
const maxUpstreams = 16

// maxFDLinks bounds the descriptors read per process when looking for its
// sockets (a readlink each): a process holding more than 65,536 is read
// only in part.
const maxFDLinks = 1 << 16

// A proxy that opens an upstream connection per request (nginx's default)
// holds none between requests, and one lives about as long as the request:
// far shorter than a read of a busy machine's socket table (tens of
// thousands of TIME_WAIT lines take tens of milliseconds). So discovery
// sends burstRequests GETs of the target at once and compares the socket
// table before and after: a connection leaves a line for a minute after it
// closes (TIME_WAIT on whichever side closed first), so every upstream
// connection the burst caused is still listed. maxVerify bounds the
// listeners then asked the target's request directly.
const (
	burstRequests = 4
	maxVerify     = 4
)

// sameBodyFactor is how far the body lengths of the two answers of one
// request may differ (either way) and still be the same page: dynamic
// pages vary a little between requests; a different service's page for the
// same path is not found, or another page altogether. Bodies up to
// sameBodySlack bytes (a short text, an empty list) always compare equal.
const (
	sameBodyFactor = 2
	sameBodySlack  = 64
)

// netView is one reading of the socket table from the point of view of
// a process tree.
type netView struct {
	socks  []socket
	mine   map[uint64]bool  // socket inodes the tree holds
	listen map[int][]socket // listeners by port
	ports  map[int]bool     // ports the tree listens on
}

func readView(procRoot string, tree []int) (netView, error) {
	socks, err := readSockets(procRoot)
	if err != nil {
		return netView{}, err
	}
	v := netView{socks: socks, mine: map[uint64]bool{}, listen: map[int][]socket{}, ports: map[int]bool{}}
	for _, pid := range tree {
		for _, ino := range socketInodes(filepath.Join(procRoot, strconv.Itoa(pid), "fd"), maxFDLinks) {
			v.mine[ino] = true
		}
	}
	for _, s := range socks {
		if s.state != tcpListenState {
			continue
		}
		v.listen[s.port] = append(v.listen[s.port], s)
		if v.mine[s.inode] {
			v.ports[s.port] = true
		}
	}
	return v, nil
}

// listenerAt is the listener (not the tree's) accepting connections to
// ip:port, ok false when there is none.
func (v netView) listenerAt(ip net.IP, port int) (socket, bool) {
	if v.ports[port] {
		return socket{}, false
	}
	for _, l := range v.listen[port] {
		if !v.mine[l.inode] && (l.ip.IsUnspecified() || l.ip.Equal(ip)) {
			return l, true
		}
	}
	return socket{}, false
}

// link is one connection to a local listener: the listener's inode, the
// address connected to, and the other (client) end.
type link struct {
	inode  uint64
	addr   string
	client string
}

// held are the tree's open outgoing connections to local listeners.
func (v netView) held(isLocal func(net.IP) bool) map[link]bool {
	out := map[link]bool{}
	for _, s := range v.socks {
		if (s.state != tcpEstablished && s.state != tcpSynSent) || !v.mine[s.inode] || v.ports[s.port] || !isLocal(s.rip) {
			continue
		}
		if l, ok := v.listenerAt(s.rip, s.rport); ok {
			out[link{l.inode, hostPort(s.rip, s.rport), hostPort(s.ip, s.port)}] = true
		}
	}
	return out
}

// links are all connections, open or closed within the last minute
// (TIME_WAIT), between a local client and a local listener that is not the
// tree's; each connection once, whichever of its two lines is listed.
func (v netView) links(isLocal func(net.IP) bool) map[link]bool {
	out := map[link]bool{}
	for _, s := range v.socks {
		if s.state == tcpListenState || !isLocal(s.rip) {
			continue
		}
		// This end is the client, or this end is the listener's side.
		if l, ok := v.listenerAt(s.rip, s.rport); ok {
			out[link{l.inode, hostPort(s.rip, s.rport), hostPort(s.ip, s.port)}] = true
		} else if l, ok := v.listenerAt(s.ip, s.port); ok && !v.isListenerPort(s.rport) {
			out[link{l.inode, hostPort(s.ip, s.port), hostPort(s.rip, s.rport)}] = true
		}
	}
	return out
}

func (v netView) isListenerPort(port int) bool { return len(v.listen[port]) > 0 }

func hostPort(ip net.IP, port int) string { return net.JoinHostPort(ip.String(), strconv.Itoa(port)) }

// upstreams groups links by listener, names each listener's process and
// returns them most connections first; listeners of skip are left out.
func upstreams(procRoot string, links map[link]bool, skip int) []Upstream {
	type key struct {
		inode uint64
		addr  string
	}
	conns := map[key]int{}
	want := map[uint64]bool{}
	for l := range links {
		conns[key{l.inode, l.addr}]++
		want[l.inode] = true
	}
	if len(conns) == 0 {
		return nil
	}
	owners, _ := socketOwners(procRoot, want)
	var out []Upstream
	for k, n := range conns {
		procs := owners[k.inode]
		pid := mainPID(procs)
		if skip != 0 && pid == skip {
			continue
		}
		_, p, _ := net.SplitHostPort(k.addr)
		port, _ := strconv.Atoi(p)
		out = append(out, Upstream{Addr: k.addr, Port: port, PID: pid, Processes: procs, Conns: n})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Conns != out[j].Conns {
			return out[i].Conns > out[j].Conns
		}
		return out[i].Addr < out[j].Addr
	})
	if len(out) > maxUpstreams {
		out = out[:maxUpstreams]
	}
	return out
}

// scanUpstreams finds the listeners on this machine that tree's processes
// hold established (or opening) outgoing connections to, most connections
// first. Listeners of the tree itself and of skip (this process) are left
// out, and so are connections to addresses of other machines.
func scanUpstreams(procRoot string, tree []int, skip int, isLocal func(net.IP) bool) ([]Upstream, error) {
	v, err := readView(procRoot, tree)
	if err != nil {
		return nil, err
	}
	return upstreams(procRoot, v.held(isLocal), skip), nil
}

// socketInodes lists the socket inodes among the descriptors in dir
// (/proc/PID/fd), reading at most max of them.
func socketInodes(dir string, max int) []uint64 {
	f, err := os.Open(dir)
	if err != nil {
		return nil
	}
	names, _ := f.Readdirnames(max)
	f.Close()
	var out []uint64
	for _, n := range names {
		if link, err := os.Readlink(filepath.Join(dir, n)); err == nil {
			if ino, ok := socketInode(link); ok {
				out = append(out, ino)
			}
		}
	}
	return out
}

// socketOwners maps the socket inodes in want to the processes holding
// them, scanning every readable process once.
func socketOwners(procRoot string, want map[uint64]bool) (map[uint64][]Process, error) {
	out := map[uint64][]Process{}
	pids, err := proc.PIDs(procRoot)
	if err != nil {
		return out, err
	}
	for _, pid := range pids {
		seen := map[uint64]bool{}
		for _, ino := range socketInodes(filepath.Join(procRoot, strconv.Itoa(pid), "fd"), maxFDLinks) {
			if want[ino] && !seen[ino] {
				seen[ino] = true
				out[ino] = append(out[ino], describe(procRoot, pid))
			}
		}
	}
	return out, nil
}

// answer is what a GET of the target said, for comparing the front with
// an upstream.
type answer struct {
	status int
	ctype  string // media type without parameters
	size   int64  // body bytes (at most maxCheckBody)
	took   time.Duration
}

func (a answer) ok() bool { return a.status >= 200 && a.status < 400 }

func (a answer) String() string {
	return fmt.Sprintf("HTTP %d %s, %d bytes", a.status, a.ctype, a.size)
}

// same says whether b looks like the same page as a.
func (a answer) same(b answer) bool {
	if a.status != b.status || a.ctype != b.ctype {
		return false
	}
	lo, hi := min(a.size, b.size), max(a.size, b.size)
	return hi <= sameBodySlack || hi <= sameBodyFactor*lo
}

// targetTimeout bounds a GET of the target's own URL through its port:
// the endpoint being hunted may be slow (a missing index at its first,
// cold call), and one that takes longer than this unloaded breaks any
// objective a hunt has.
const targetTimeout = 10 * time.Second

// directFactor bounds the same GET at a candidate upstream to this many
// times what the target's port took (at least Options.Timeout): the
// backend answers without the proxy's hop, and a listener that speaks
// another protocol and waits for more bytes must not hold discovery for
// targetTimeout.
const directFactor = 3

// get fetches u within timeout and returns its status, media type, length
// and how long it took.
func get(ctx context.Context, opt Options, u string, timeout time.Duration) (answer, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return answer{}, err
	}
	resp, err := opt.Client.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	n, _ := io.Copy(io.Discard, io.LimitReader(resp.Body, maxCheckBody))
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	return answer{status: resp.StatusCode, ctype: mt, size: n, took: time.Since(start)}, nil
}

// findUpstreams looks for the listeners the front's tree is connected to
// and, unless opt.Passive, which of them is the backend the front forwards
// the target's request to. It returns the front's own answer to the target
// (zero when none was fetched).
func findUpstreams(ctx context.Context, opt Options, target *url.URL, tree []int, isLocal func(net.IP) bool) ([]Upstream, answer, error) {
	self := os.Getpid()
	before, err := readView(opt.ProcRoot, tree)
	if err != nil {
		return nil, answer{}, err
	}
	ups := upstreams(opt.ProcRoot, before.held(isLocal), self)
	if opt.Passive {
		return ups, answer{}, nil
	}
	var front answer
	if len(ups) == 0 {
		// No connection open now: the front may open one per request.
		// Send a few at once and see which connections they caused.
		var mu sync.Mutex
		var wg sync.WaitGroup
		ok := 0
		for range burstRequests {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// A request the front failed (a proxy out of connections
				// answers 502) may not have reached an upstream.
				if a, err := get(ctx, opt, target.String(), max(opt.Timeout, targetTimeout)); err == nil && a.ok() {
					mu.Lock()
					front, ok = a, ok+1
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		after, err := readView(opt.ProcRoot, tree)
		if err != nil {
			return nil, front, err
		}
		// Kept-alive connections the burst opened are held now.
		ups = upstreams(opt.ProcRoot, after.held(isLocal), self)
		if len(ups) == 0 && ok > 0 {
			old := before.links(isLocal)
			fresh := map[link]bool{}
			for l := range after.links(isLocal) {
				if !old[l] {
					fresh[l] = true
				}
			}
			// A listener the front forwards to got at least one new
			// connection per request answered; one that got many more
			// served someone else meanwhile, so the closest come first.
			for _, u := range upstreams(opt.ProcRoot, fresh, self) {
				if u.Conns >= ok {
					ups = append(ups, u)
				}
			}
			sort.SliceStable(ups, func(i, j int) bool { return ups[i].Conns < ups[j].Conns })
		}
	}
	if len(ups) == 0 {
		return nil, front, nil
	}
	if front.status == 0 {
		if front, err = get(ctx, opt, target.String(), max(opt.Timeout, targetTimeout)); err != nil {
			return ups, front, fmt.Errorf("target: %w", err)
		}
	}
	if !front.ok() {
		return ups, front, nil
	}
	for i := range ups[:min(len(ups), maxVerify)] {
		direct := *target
		direct.Host = ups[i].Addr
		direct.Scheme = "http"
		a, err := get(ctx, opt, direct.String(), max(opt.Timeout, directFactor*front.took))
		if err != nil {
			// Without the URL: its query is the user's.
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err
			}
			ups[i].Answer = "no HTTP answer (" + err.Error() + ")"
			continue
		}
		ups[i].Answer = a.String()
		if front.same(a) {
			ups[i].Backend = true
			break
		}
	}
	return ups, front, nil
}

// upstreamSummary is one line on the upstreams for notes and Summary.
func upstreamSummary(ups []Upstream) string {
	var parts []string
	for _, u := range ups {
		s := "port " + strconv.Itoa(u.Port)
		if u.PID > 0 {
			s += fmt.Sprintf(" (pid %d, %s)", u.PID, u.Name())
		}
		if u.Backend {
			s = "the backend on " + s
		} else if u.Answer != "" {
			s += ": " + u.Answer
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

// treeOf is the process tree of pid (pid alone when it cannot be read).
func treeOf(procRoot string, pid int) []int {
	t, err := proc.Tree(procRoot, pid)
	if err != nil {
		return []int{pid}
	}
	return t
}
