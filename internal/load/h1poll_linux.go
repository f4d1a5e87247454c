package load

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"
)

// pollerFor returns the transport's private poller when a connection to o
// should be a pollConn: plain TCP during an open-model run whose workers
// may wait at the read gate, or a closed-model run with event loops.
// Otherwise (TLS, a capped number of connections, or no poller on this
// system) it returns nil and the connection is an ordinary net.Conn.
func (t *h1Transport) pollerFor(o *h1Origin) *poller {
	if o.serverName != "" || (t.gate.Load() == nil && !t.looped.Load()) {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.poll == nil && !t.noPoll {
		p, err := newPoller()
		if err != nil {
			t.noPoll = true // fall back to net.Conn for good
			return nil
		}
		t.poll = p
	}
	return t.poll
}

// dialPoll connects a pollConn to o: to the address that worked last, or
// to each of the host's addresses in turn (as net.Dialer does, without its
// parallel "happy eyeballs" race), remembering the first that connects.
func (t *h1Transport) dialPoll(ctx context.Context, p *poller, o *h1Origin, deadline time.Time) (net.Conn, error) {
	o.mu.Lock()
	ap, ok := o.ap, o.apOK
	o.mu.Unlock()
	if ok {
		c, err := p.dial(ctx, ap, deadline)
		if err != nil { // resolve again next time: the host may have moved
			o.mu.Lock()
			o.apOK = false
			o.mu.Unlock()
		}
		return c, err
	}
	host, portStr, err := net.SplitHostPort(o.addr)
	if err != nil {
		return nil, fmt.Errorf("address %q: %w", o.addr, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: fmt.Errorf("port %q: %w", portStr, err)}
	}
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
	} else {
		ips, err = net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return nil, &net.OpError{Op: "dial", Net: "tcp", Err: err}
		}
		if len(ips) == 0 {
			return nil, &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no addresses", Name: host, IsNotFound: true}}
		}
	}
	var first error
	for i, ip := range ips {
		// Each address gets an equal share of the time left (as
		// net.Dialer does), so one that drops packets cannot use it all.
		dl := deadline
		if left := time.Until(deadline); left > 0 {
			dl = time.Now().Add(left / time.Duration(len(ips)-i))
		}
		ap := netip.AddrPortFrom(ip.Unmap(), uint16(port))
		c, err := p.dial(ctx, ap, dl)
		if err == nil {
			c.SetDeadline(deadline)
			o.mu.Lock()
			o.ap, o.apOK = ap, true
			o.mu.Unlock()
			return c, nil
		}
		if first == nil {
			first = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, first
}

// closePoller stops the private poller (Engine.Close).
func (t *h1Transport) closePoller() {
	t.mu.Lock()
	p := t.poll
	t.poll, t.noPoll = nil, true
	t.mu.Unlock()
	if p != nil {
		p.close()
	}
}
