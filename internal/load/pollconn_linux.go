package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A pollConn is a plain-TCP connection kept out of Go's network poller.
//
// Why: Go registers every socket with its epoll set for good, so every
// answer that arrives while the generator is idle wakes a thread — even
// when no goroutine is reading yet. At 10,000 req/s on a virtual machine
// those wake-ups cost more CPU than the requests (docs/performance.md). A
// pollConn's socket is in no epoll set until a read or write would block;
// it is then armed once (EPOLLONESHOT) in the transport's own epoll set,
// which is itself one pollable file in Go's poller. Workers that wait at
// the readGate find their answers already there at the pacer's wake-up and
// read them with no wake-up of their own; only answers slower than that
// arm the socket. The kernel's receive timestamp of what was read last
// (SO_TIMESTAMPNS) times the answer's end, so reading later does not add
// to the latency measured.
type pollConn struct {
	fd       int
	p        *poller
	wake     chan struct{} // 1-buffered: the socket became ready, or a kick
	timer    *time.Timer   // for waits with a deadline; created on first use
	deadline atomic.Int64  // on p's monotonic clock (p.now); 0: none
	closed   atomic.Bool
	armed    bool // registered in p's epoll set (EPOLL_CTL_MOD from then on)
	laddr    net.Addr
	raddr    net.Addr
	oob      [64]byte
	last     int64 // CLOCK_REALTIME nanoseconds of the data read last; 0: none
	// unstamped: data came without a receive timestamp (the kernel can
	// turn timestamping on late); the connection is then read at once,
	// never at the read gate, whose wait would enter the latency.
	unstamped bool
	// noWait: a write that would block fails with errWouldBlock instead
	// of waiting (set while a closed-model event loop drives the
	// connection: one full send buffer must not stall its other users).
	noWait bool
}

// errWouldBlock is a write refused by a noWait connection.
var errWouldBlock = errors.New("send buffer full")

// poller is a transport's private epoll set and the goroutine that turns
// its events into pollConn wake-ups.
type poller struct {
	epfd  int
	f     *os.File  // epfd, registered with Go's poller
	base  time.Time // deadlines are kept as monotonic offsets from it
	mu    sync.Mutex
	conns map[int]*pollConn
	done  chan struct{}
}

// now is the poller's monotonic clock (never 0: 0 means "no deadline").
func (p *poller) now() int64 { return int64(time.Since(p.base)) + 1 }

// at converts a deadline to the poller's clock; the zero time is 0.
func (p *poller) at(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return max(int64(t.Sub(p.base))+1, 1)
}

// expired reports whether deadline dl (0: none) has passed.
func (p *poller) expired(dl int64) bool { return dl != 0 && p.now() >= dl }

// timestampsWork reports whether this kernel timestamps received TCP data
// on request: without, pollConns would read late and time answers late.
func timestampsWork() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		return fmt.Errorf("SO_TIMESTAMPNS: %w", err)
	}
	return nil
}

func newPoller() (*poller, error) {
	if err := timestampsWork(); err != nil {
		return nil, err
	}
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("epoll fd nonblock: %w", err)
	}
	p := &poller{epfd: epfd, f: os.NewFile(uintptr(epfd), "epoll"), base: time.Now(), conns: map[int]*pollConn{}, done: make(chan struct{})}
	rc, err := p.f.SyscallConn()
	if err != nil {
		p.f.Close()
		return nil, fmt.Errorf("epoll fd: %w", err)
	}
	go p.loop(rc)
	return p, nil
}

// loop delivers events until the poller is closed.
func (p *poller) loop(rc interface {
	Read(func(uintptr) bool) error
}) {
	defer close(p.done)
	var evs [128]unix.EpollEvent
	var ready []*pollConn
	for {
		ready = ready[:0]
		err := rc.Read(func(uintptr) bool {
			n, err := unix.EpollWait(p.epfd, evs[:], 0)
			if err == unix.EINTR || n <= 0 {
				return false // wait until the epoll set is readable
			}
			p.mu.Lock()
			for _, ev := range evs[:n] {
				if c := p.conns[int(ev.Fd)]; c != nil {
					ready = append(ready, c)
				}
			}
			p.mu.Unlock()
			return true
		})
		if err != nil {
			return // closed
		}
		for _, c := range ready {
			c.kick()
		}
	}
}

// close stops the poller and closes every connection it serves.
func (p *poller) close() {
	p.f.Close()
	<-p.done
	p.mu.Lock()
	conns := slices.Collect(maps.Values(p.conns))
	p.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// dialPoll connects to addr (an IP address and port) before deadline.
func (p *poller) dial(ctx context.Context, addr netip.AddrPort, deadline time.Time) (*pollConn, error) {
	family := unix.AF_INET
	if addr.Addr().Is6() && !addr.Addr().Is4In6() {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return nil, dialErr(addr, os.NewSyscallError("socket", err))
	}
	// As Go's dialer: no Nagle delay on small writes.
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		unix.Close(fd)
		return nil, dialErr(addr, os.NewSyscallError("setsockopt", err))
	}
	c := &pollConn{fd: fd, p: p, wake: make(chan struct{}, 1), raddr: net.TCPAddrFromAddrPort(addr)}
	c.deadline.Store(p.at(deadline))
	p.mu.Lock()
	p.conns[fd] = c
	p.mu.Unlock()
	stop := context.AfterFunc(ctx, c.kick)
	defer stop()
	var sa unix.Sockaddr
	if family == unix.AF_INET {
		sa = &unix.SockaddrInet4{Port: int(addr.Port()), Addr: addr.Addr().Unmap().As4()}
	} else {
		sa6 := &unix.SockaddrInet6{Port: int(addr.Port()), Addr: addr.Addr().As16()}
		if z := addr.Addr().Zone(); z != "" {
			if ifi, err := net.InterfaceByName(z); err == nil {
				sa6.ZoneId = uint32(ifi.Index)
			}
		}
		sa = sa6
	}
	err = unix.Connect(fd, sa)
	switch err {
	case unix.EINTR, unix.EALREADY: // as Go's dialer: the connect goes on
		err = unix.EINPROGRESS
	case unix.EISCONN:
		err = nil
	}
	if err == unix.EINPROGRESS {
		for err = unix.EINPROGRESS; err == unix.EINPROGRESS; {
			if werr := c.await(unix.EPOLLOUT, ctx); werr != nil {
				c.Close()
				return nil, dialErr(addr, werr)
			}
			var soerr int
			soerr, err = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
			if err == nil && soerr != 0 {
				err = unix.Errno(soerr)
			}
			if err == nil {
				// Writable with no error, but a spurious wake-up leaves the
				// connect pending: only a peer name proves it done.
				if _, perr := unix.Getpeername(fd); perr == unix.ENOTCONN {
					err = unix.EINPROGRESS
				}
			}
		}
	}
	if err != nil {
		c.Close()
		return nil, dialErr(addr, os.NewSyscallError("connect", err))
	}
	if sa, err := unix.Getsockname(fd); err == nil {
		c.laddr = sockaddrToTCP(sa)
	}
	return c, nil
}

func dialErr(addr netip.AddrPort, err error) error {
	return &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(addr), Err: err}
}

func sockaddrToTCP(sa unix.Sockaddr) net.Addr {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return &net.TCPAddr{IP: net.IP(a.Addr[:]), Port: a.Port}
	case *unix.SockaddrInet6:
		return &net.TCPAddr{IP: net.IP(a.Addr[:]), Port: a.Port}
	}
	return nil
}

// kick wakes the conn's waiter, if any (a readiness event, an abort, a new
// deadline).
func (c *pollConn) kick() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// errPollTimeout is a wait that reached the deadline; it satisfies
// os.ErrDeadlineExceeded (and net.Error's Timeout) like net.Conn's.
var errPollTimeout = os.ErrDeadlineExceeded

// await arms the socket for events and waits for them, the deadline, the
// connection's close or ctx (nil: none).
func (c *pollConn) await(events uint32, ctx context.Context) error {
	ev := unix.EpollEvent{Events: events | unix.EPOLLONESHOT | unix.EPOLLRDHUP, Fd: int32(c.fd)}
	op := unix.EPOLL_CTL_MOD
	if !c.armed {
		op = unix.EPOLL_CTL_ADD
	}
	if err := unix.EpollCtl(c.p.epfd, op, c.fd, &ev); err != nil {
		return os.NewSyscallError("epoll_ctl", err)
	}
	c.armed = true
	for {
		if c.closed.Load() {
			return net.ErrClosed
		}
		if ctx != nil && ctx.Err() != nil {
			return ctx.Err()
		}
		dl := c.deadline.Load()
		if dl == 0 {
			<-c.wake
			return nil
		}
		d := time.Duration(dl - c.p.now())
		if d <= 0 {
			return errPollTimeout
		}
		if c.timer == nil {
			c.timer = time.NewTimer(d)
		} else {
			c.timer.Reset(d)
		}
		select {
		case <-c.wake:
			c.timer.Stop()
			// A kick for a new deadline or a close is checked on the next
			// round by the caller's retry of its syscall; readiness too.
			if c.closed.Load() {
				return net.ErrClosed
			}
			if c.p.expired(c.deadline.Load()) {
				return errPollTimeout
			}
			return nil
		case <-c.timer.C:
		}
	}
}

// Read reads into b, waiting while nothing is there.
func (c *pollConn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	for {
		if c.closed.Load() {
			return 0, c.opErr("read", net.ErrClosed)
		}
		if c.p.expired(c.deadline.Load()) {
			return 0, c.opErr("read", errPollTimeout)
		}
		n, err := c.recv(b)
		switch err {
		case nil:
			return n, nil
		case unix.EAGAIN:
			if err := c.await(unix.EPOLLIN, nil); err != nil {
				return 0, c.opErr("read", err)
			}
		default:
			return 0, c.readErr(err)
		}
	}
}

// readErr is what Read returns for recv's error err.
func (c *pollConn) readErr(err error) error {
	if err == io.EOF {
		return err
	}
	return c.opErr("read", os.NewSyscallError("recvmsg", err))
}

// recv reads what is there into b without waiting: unix.EAGAIN when
// nothing is, io.EOF at the end, other errors as recvmsg's errno. It keeps
// the data's receive timestamp.
func (c *pollConn) recv(b []byte) (int, error) {
	for {
		n, oobn, _, _, err := unix.Recvmsg(c.fd, b, c.oob[:], 0)
		switch err {
		case nil:
			if n == 0 {
				return 0, io.EOF
			}
			c.last = 0 // a read without a timestamp leaves none: never an early end
			c.stamp(c.oob[:oobn])
			if c.last == 0 {
				c.unstamped = true
			}
			return n, nil
		case unix.EINTR:
			continue
		}
		return 0, err
	}
}

// stamp keeps the SCM_TIMESTAMPNS time among control messages b.
func (c *pollConn) stamp(b []byte) {
	for len(b) > 0 {
		h, data, rest, err := unix.ParseOneSocketControlMessage(b)
		if err != nil {
			return
		}
		if h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_TIMESTAMPNS && len(data) >= int(unsafe.Sizeof(unix.Timespec{})) {
			ts := (*unix.Timespec)(unsafe.Pointer(&data[0]))
			c.last = ts.Nano()
		}
		b = rest
	}
}

// Write writes all of b, waiting while the socket's buffer is full.
func (c *pollConn) Write(b []byte) (int, error) {
	written := 0
	for written < len(b) {
		if c.closed.Load() {
			return written, c.opErr("write", net.ErrClosed)
		}
		if c.p.expired(c.deadline.Load()) {
			return written, c.opErr("write", errPollTimeout)
		}
		n, err := unix.Write(c.fd, b[written:])
		switch err {
		case nil:
			written += n
		case unix.EINTR:
		case unix.EAGAIN:
			if c.noWait {
				return written, c.opErr("write", errWouldBlock)
			}
			if err := c.await(unix.EPOLLOUT, nil); err != nil {
				return written, c.opErr("write", err)
			}
		default:
			return written, c.opErr("write", os.NewSyscallError("write", err))
		}
	}
	return written, nil
}

func (c *pollConn) opErr(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.laddr, Addr: c.raddr, Err: err}
}

// Close closes the socket; a waiter returns net.ErrClosed.
func (c *pollConn) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	c.p.mu.Lock()
	delete(c.p.conns, c.fd)
	c.p.mu.Unlock()
	c.kick()
	// The waiter, if any, is woken and no longer uses fd once it sees
	// closed; a worker closes its own connection, so none is waiting here
	// except on abort, which only spoils deadlines.
	return unix.Close(c.fd)
}

func (c *pollConn) LocalAddr() net.Addr  { return c.laddr }
func (c *pollConn) RemoteAddr() net.Addr { return c.raddr }

// SetDeadline sets the deadline of reads and writes alike (as net.Conn's);
// a waiter re-checks it.
func (c *pollConn) SetDeadline(t time.Time) error {
	c.deadline.Store(c.p.at(t))
	c.kick()
	return nil
}

// SetReadDeadline and SetWriteDeadline set both deadlines: the client
// sets one deadline per request for both directions.
func (c *pollConn) SetReadDeadline(t time.Time) error  { return c.SetDeadline(t) }
func (c *pollConn) SetWriteDeadline(t time.Time) error { return c.SetDeadline(t) }

// gated reports whether reads of this connection may wait at the read gate:
// its answers carry receive timestamps.
func (c *pollConn) gated() bool { return !c.unstamped }

// rxStamp returns the receive timestamp of the data read last (0: none)
// and forgets it.
func (c *pollConn) rxStamp() int64 {
	t := c.last
	c.last = 0
	return t
}
