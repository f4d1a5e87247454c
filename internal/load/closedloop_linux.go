package load

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// A closedLoop drives closed-model users from one goroutine, as wrk's event
// loop does: it writes each user's next request the moment its answer is
// parsed and waits for all their sockets in one epoll set.
//
// Why: on Go's network poller every answer costs a read that finds nothing
// (right after the write), a goroutine park and an unpark; with 50 users
// those are a fifth of the generator's CPU per request, and the closed loop
// is CPU-bound (docs/performance.md). Here an answer costs one recvmsg.
//
// The loop is only an accelerator for the common case; the goroutine path
// (worker.one) stays the general one. A user starts on its own goroutine
// (which dials), joins a loop once it holds an idle plain-HTTP pollConn,
// and goes back to a goroutine for anything else: another origin or TLS,
// a large request body, a connection that cannot be reused, an answer
// that does not fit loopMaxBuffered or runs until the server closes, any
// error or timeout. There the blocking code finishes the exchange from
// the bytes the loop had read, so errors are classified and stale
// connections retried exactly as on the goroutine path.
type closedLoop struct {
	cs    *closedState
	t     *h1Transport
	epfd  int
	efd   int // eventfd in the epoll set (slot -1): joins and stop
	loops []*closedLoop

	mu     sync.Mutex
	joins  []*loopUser // handed over, not adopted yet (mu)
	closed bool        // the loop has ended: joins are refused (mu)

	users    []*loopUser // adopted users by slot (the epoll data)
	answered []*loopUser // answered in this batch: their next requests are due
	free     []int       // free slots
	scanAt   time.Time   // next deadline and abort scan

	bread bytes.Reader
	br    *bufio.Reader
}

// A loopUser is a user in a closedLoop with its connection.
type loopUser struct {
	w        *worker
	c        *h1Conn
	pc       *pollConn
	slot     int
	busy     bool          // a request is in flight
	intended time.Duration // of the request in flight
	sent     time.Duration
	deadline time.Time // the request's, for a retry
	out      int64
	acc      []byte // the answer's bytes read so far
}

const (
	// loopMaxBuffered bounds the bytes of one answer a loop buffers (each
	// user keeps its buffer); a longer answer is finished on a goroutine,
	// which streams it through its connection's read buffer of the same
	// size, so a user in a loop never holds more memory than one on a
	// goroutine.
	loopMaxBuffered = readBufSize
	// loopMaxBody: requests with a larger body are sent from a goroutine
	// (their write may have to wait for the server to read).
	loopMaxBody = 16 << 10
	// loopScan is how often a loop checks deadlines and aborts.
	loopScan = 10 * time.Millisecond
)

// newClosedLoops starts one event loop per usable CPU (at most one per
// user) for a closed-model run, or returns nil when the transport cannot
// use them (net/http, HTTP/2, no private poller).
func (rs *runState) newClosedLoops(cs *closedState) []*closedLoop {
	t, ok := rs.e.tr.(*h1Transport)
	if !ok {
		return nil
	}
	t.looped.Store(true)
	if t.pollerFor(&h1Origin{}) == nil {
		t.looped.Store(false)
		return nil
	}
	n := min(runtime.GOMAXPROCS(0), rs.sched.Users())
	loops := make([]*closedLoop, 0, n)
	for range n {
		l, err := newClosedLoop(cs, t)
		if err != nil {
			break // fewer loops (or none): the goroutine path serves the rest
		}
		loops = append(loops, l)
	}
	if len(loops) == 0 {
		t.looped.Store(false)
		return nil
	}
	for _, l := range loops {
		l.loops = loops
		rs.workers.Add(1)
		go l.run()
	}
	return loops
}

func newClosedLoop(cs *closedState, t *h1Transport) (*closedLoop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, os.NewSyscallError("eventfd", err)
	}
	fail := func(err error) (*closedLoop, error) {
		unix.Close(efd)
		unix.Close(epfd)
		return nil, err
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, efd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: -1}); err != nil {
		return fail(os.NewSyscallError("epoll_ctl", err))
	}
	return &closedLoop{cs: cs, t: t, epfd: epfd, efd: efd, br: bufio.NewReaderSize(nil, readBufSize)}, nil
}

// join hands w, whose last request left a pollConn idle, to the loop. It
// reports false when the loop cannot take it (then w goes on as it was).
func (l *closedLoop) join(w *worker) bool {
	cl, ok := w.cl.(*h1Client)
	if !ok || cl.lastPut == nil || cl.lastPut.rx == nil || l.cs.stop.Load() {
		return false
	}
	c := cl.lastPut
	if !l.t.reclaim(c) {
		return false
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		l.t.put(c)
		return false
	}
	l.joins = append(l.joins, &loopUser{w: w, c: c, pc: c.rx})
	l.kick()
	l.mu.Unlock()
	return true
}

// wake makes the loop look at its joins and the stop flag, unless it has
// ended.
func (l *closedLoop) wake() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.kick()
	}
}

// kick writes the loop's eventfd; l.mu is held and the loop has not ended
// (it closes the eventfd under l.mu, so the descriptor is still its own).
func (l *closedLoop) kick() {
	var one = [8]byte{1}
	unix.Write(l.efd, one[:]) // a full counter still wakes: nothing to do on error
}

func (l *closedLoop) run() {
	rs := l.cs.rs
	defer rs.workers.Done()
	defer unix.Close(l.epfd)
	var evs [128]unix.EpollEvent
	l.scanAt = time.Now().Add(loopScan)
	for {
		if len(l.users) == len(l.free) && (l.cs.stop.Load() || rs.aborted.Load()) {
			l.mu.Lock()
			if len(l.joins) == 0 {
				l.closed = true
				unix.Close(l.efd)
				l.mu.Unlock()
				return
			}
			l.mu.Unlock()
		}
		n := l.wait(evs[:])
		for _, ev := range evs[:n] {
			if ev.Fd < 0 {
				l.adopt()
				continue
			}
			if u := l.users[ev.Fd]; u != nil && u.busy {
				l.readable(u)
			}
		}
		// The next requests of the users answered in this batch go out
		// together, after it: the server then finds them together too
		// (as wrk's loop does, writing when the sockets next come up
		// writable), which costs it fewer wake-ups than one at a time.
		for i, u := range l.answered {
			if l.users[u.slot] == u {
				l.send(u)
			}
			l.answered[i] = nil
		}
		l.answered = l.answered[:0]
		if now := time.Now(); !now.Before(l.scanAt) {
			l.scanAt = now.Add(loopScan)
			l.scan(now)
		}
	}
}

// wait returns the ready events, waiting for loopScan at most.
//
// It waits in epoll_wait itself, a blocking system call, rather than
// parking on Go's poller: that would cost a second epoll_wait and a
// deadline per wait, about 1.2 µs per answer when answers come one by one
// (measured: docs/performance.md). A thread blocked here gives its P up
// to other goroutines as any system call does.
func (l *closedLoop) wait(evs []unix.EpollEvent) int {
	n, _ := unix.EpollWait(l.epfd, evs, int(loopScan/time.Millisecond))
	return max(n, 0) // EINTR: try again
}

// adopt takes the users that joined into the epoll set and sends their
// next requests.
func (l *closedLoop) adopt() {
	var buf [8]byte
	unix.Read(l.efd, buf[:])
	l.mu.Lock()
	joins := l.joins
	l.joins = nil
	l.mu.Unlock()
	for _, u := range joins {
		if k := len(l.free); k > 0 {
			u.slot = l.free[k-1]
			l.free = l.free[:k-1]
			l.users[u.slot] = u
		} else {
			u.slot = len(l.users)
			l.users = append(l.users, u)
		}
		u.pc.noWait = true
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(u.slot)}
		if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, u.pc.fd, &ev); err != nil {
			l.remove(u, false)
			l.t.put(u.c)
			l.resume(u, nil)
			continue
		}
		l.send(u)
	}
}

// remove takes u out of the loop; registered says whether its socket is
// in the epoll set.
func (l *closedLoop) remove(u *loopUser, registered bool) {
	u.pc.noWait = false
	if registered {
		unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, u.pc.fd, nil)
	}
	l.users[u.slot] = nil
	l.free = append(l.free, u.slot)
}

// resume goes on with u on a goroutine of its own: first finishing what
// was in flight (then, when not nil), then as any closed-model user.
func (l *closedLoop) resume(u *loopUser, then func()) {
	cs := l.cs
	cs.rs.workers.Add(1)
	go func() {
		defer cs.rs.workers.Done()
		if then != nil {
			then()
		}
		if !cs.user(u.w, l.loops) {
			cs.users.Done()
		}
	}()
}

// send writes u's next request, or hands u back to a goroutine for one the
// loop does not send, or ends u when the run is over.
func (l *closedLoop) send(u *loopUser) {
	t, w := l.t, u.w
	if !l.cs.next() {
		l.remove(u, true)
		l.t.put(u.c)
		l.cs.users.Done()
		return
	}
	w.gen.Next(&w.req)
	// Requests the loop does not send go from a goroutine, timed from
	// when it starts them (as the goroutine path times its own).
	handBack := func() {
		l.remove(u, true)
		l.t.put(u.c)
		l.resume(u, func() { w.send(l.cs.rs.since()) })
	}
	key, _, uri, secure, err := splitURL(w.req.URL)
	if err != nil || secure || key != u.c.origin.key || len(w.req.Body) > loopMaxBody {
		handBack()
		return
	}
	intended := l.cs.rs.since()
	deadline := time.Now().Add(t.timeout)
	if err := u.c.setDeadline(t, deadline); err != nil {
		handBack()
		return
	}
	u.pc.rxStamp() // forget what came before
	out, err := u.c.writeRequest(&w.req, uri, t.ua)
	if errors.Is(err, errBadRequest) {
		// Refused before a byte was written (the scenario's request
		// cannot be sent): recorded as the goroutine path records it,
		// the connection intact.
		l.remove(u, true)
		t.put(u.c)
		l.resume(u, func() { w.finish(intended, intended, 0, 0, out, err, 0) })
		return
	}
	if err != nil {
		// The connection failed before any answer, or its send buffer is
		// full (the loop does not wait: pollConn.noWait): as the
		// goroutine path does, another try on a fresh connection.
		l.remove(u, true)
		t.closeConn(u.c)
		l.resume(u, func() {
			status, in, out, err := w.cl.(*h1Client).retryStale(&w.req, deadline)
			w.finish(intended, intended, status, in, out, err, w.cl.rxEnd())
		})
		return
	}
	u.intended, u.sent, u.out, u.deadline = intended, intended, out, deadline
	u.acc = u.acc[:0]
	u.busy = true
}

// readable reads what arrived for u and, once the answer is complete,
// records it and sends the next request.
func (l *closedLoop) readable(u *loopUser) {
	if u.pc.p.expired(u.pc.deadline.Load()) {
		// Past the deadline: a timeout, however complete the answer (as
		// pollConn.Read checks before reading); the goroutine path
		// records it.
		l.finishOnGoroutine(u, u.c.nc)
		return
	}
	if len(u.acc) == cap(u.acc) {
		if cap(u.acc) >= loopMaxBuffered {
			l.finishOnGoroutine(u, u.c.nc)
			return
		}
		u.acc = append(u.acc, make([]byte, max(cap(u.acc), 2<<10))...)[:len(u.acc)]
	}
	n, err := u.pc.recv(u.acc[len(u.acc):cap(u.acc)])
	switch {
	case err == unix.EAGAIN:
		return
	case err != nil:
		l.finishOnGoroutine(u, &errReader{u.pc.readErr(err)})
		return
	}
	u.acc = u.acc[:len(u.acc)+n]

	l.bread.Reset(u.acc)
	l.br.Reset(&l.bread)
	head := u.w.req.Method == "HEAD"
	h, _, err := readHead(l.br)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return // more to come
	}
	if err == nil && !head && h.status != 204 && h.status != 304 && !h.chunked && h.contentLength < 0 {
		// The body runs until the server closes: a goroutine reads it.
		l.finishOnGoroutine(u, u.c.nc)
		return
	}
	var body int64
	reusable := false
	if err == nil {
		body, reusable, err = readBody(l.br, h, head, l.t.maxBody)
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return
		}
	}
	if err != nil { // malformed: the goroutine path meets the same error
		l.finishOnGoroutine(u, u.c.nc)
		return
	}
	if l.bread.Len()+l.br.Buffered() > 0 {
		reusable = false // more than one answer to one request
	}
	u.c.used = true
	l.cs.looped.Add(1)
	var ferr error
	if l.t.aborted.Load() {
		ferr = errAborted
	}
	u.w.finish(u.intended, u.sent, h.status, h.headBytes+body, u.out, ferr, u.pc.rxStamp())
	if !reusable || ferr != nil {
		l.remove(u, true)
		l.t.closeConn(u.c)
		l.resume(u, nil)
		return
	}
	u.busy = false
	l.answered = append(l.answered, u)
}

// finishOnGoroutine hands u back with its answer unfinished: a goroutine
// reads it again from the bytes the loop has, then from rest, with the
// blocking code (retrying a stale connection, classifying errors, timing
// out at the connection's deadline).
func (l *closedLoop) finishOnGoroutine(u *loopUser, rest io.Reader) {
	l.remove(u, true)
	t, w, c := l.t, u.w, u.c
	c.br = bufio.NewReaderSize(io.MultiReader(bytes.NewReader(bytes.Clone(u.acc)), rest), readBufSize)
	intended, sent, out, deadline := u.intended, u.sent, u.out, u.deadline
	l.resume(u, func() {
		status, in, reusable, started, err := readResponse(c.br, w.req.Method == "HEAD", t.maxBody)
		rx := c.rx.rxStamp()
		if err == nil && t.aborted.Load() {
			err = errAborted
		}
		if err == nil {
			c.used = true
		}
		if err == nil && reusable {
			t.put(c)
		} else {
			t.closeConn(c)
		}
		if !started && c.used && err != nil && !errors.Is(err, os.ErrDeadlineExceeded) && !t.aborted.Load() {
			// Stale (closed before any byte of an answer, not timed out):
			// the goroutine path tries once more on a fresh connection,
			// still timed from the first send.
			status, in, out, err = w.cl.(*h1Client).retryStale(&w.req, deadline)
			rx = w.cl.rxEnd()
		}
		w.finish(intended, sent, status, in, out, err, rx)
	})
}

// scan hands back the users whose deadline has passed (the goroutine path
// then times them out) and, after an abort, cancels what is in flight.
func (l *closedLoop) scan(now time.Time) {
	aborted := l.cs.rs.aborted.Load()
	for _, u := range l.users {
		if u == nil || !u.busy {
			continue
		}
		if aborted {
			l.remove(u, true)
			l.t.closeConn(u.c)
			rec := l.cs.rs.rec
			rec.endRequest()
			rec.canceled.Add(1)
			l.cs.users.Done()
			continue
		}
		if !u.c.deadline.IsZero() && !now.Before(u.c.deadline) {
			l.finishOnGoroutine(u, u.c.nc)
		}
	}
}

// errReader fails every read with err.
type errReader struct{ err error }

func (r *errReader) Read([]byte) (int, error) { return 0, r.err }
