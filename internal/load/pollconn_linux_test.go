package load

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chokepoint/chokepoint/internal/lowport"
)

// pollPair returns a pollConn dialled to a fresh low-port listener and the
// server's end of it.
func pollPair(t *testing.T) (*pollConn, net.Conn) {
	t.Helper()
	l, err := lowport.Listen()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	p, err := newPoller()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.close)
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	ap := netip.MustParseAddrPort(l.Addr().String())
	c, err := p.dial(context.Background(), ap, time.Now().Add(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	srv, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { srv.Close() })
	return c, srv
}

// The receive timestamp of data read late is when the data arrived, not
// when it was read: what lets workers read at the pacer's wake-up without
// adding the wait to the latency.
func TestPollConnReceiveTimestamp(t *testing.T) {
	c, srv := pollPair(t)
	// The kernel turns receive timestamps on for the whole system a
	// moment after the first socket asks for them (a deferred static
	// key): until then data arrives unstamped. Exchange a byte until one
	// comes stamped.
	one := make([]byte, 1)
	for i := 0; ; i++ {
		if _, err := srv.Write(one); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Read(one); err != nil {
			t.Fatal(err)
		}
		if c.rxStamp() != 0 {
			break
		}
		if i == 1000 {
			t.Fatal("no receive timestamp after 1000 exchanges")
		}
		runtime.Gosched()
	}
	before := time.Now().UnixNano()
	if _, err := srv.Write([]byte("HTTP/1.1 200 OK\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	after := time.Now().UnixNano() // on loopback the write delivers before it returns
	// Read much later than the data arrived.
	time.Sleep(50 * time.Millisecond)
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "HTTP/1.1 200 OK\r\n\r\n" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
	read := time.Now().UnixNano()
	ts := c.rxStamp()
	if ts < before || ts > after {
		t.Errorf("receive timestamp %d outside the server's write [%d, %d]; read at %d (%.1f ms later)",
			ts, before, after, read, float64(read-after)/1e6)
	}
	if again := c.rxStamp(); again != 0 {
		t.Errorf("rxStamp not forgotten: %d", again)
	}
}

func TestPollConnWriteReadEOF(t *testing.T) {
	c, srv := pollPair(t)
	// A write larger than the socket buffers waits for the reader.
	big := make([]byte, 8<<20)
	done := make(chan error, 1)
	go func() {
		_, err := c.Write(big)
		done <- err
	}()
	if n, err := io.CopyN(io.Discard, srv, int64(len(big))); err != nil || n != int64(len(big)) {
		t.Fatalf("server read %d, %v", n, err)
	}
	if err := <-done; err != nil {
		t.Fatalf("write: %v", err)
	}
	srv.Close()
	if _, err := c.Read(make([]byte, 16)); !errors.Is(err, io.EOF) {
		t.Errorf("read after the peer closed: %v, want EOF", err)
	}
}

func TestPollConnDeadlines(t *testing.T) {
	t.Run("read past deadline", func(t *testing.T) {
		c, _ := pollPair(t)
		c.SetDeadline(time.Now().Add(20 * time.Millisecond))
		_, err := c.Read(make([]byte, 16))
		if ClassifyError(err) != ClassTimeout || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("read: %v (class %s), want a timeout", err, ClassifyError(err))
		}
	})
	t.Run("deadline spoiled while waiting", func(t *testing.T) {
		c, _ := pollPair(t)
		c.SetDeadline(time.Time{})
		errc := make(chan error, 1)
		go func() {
			_, err := c.Read(make([]byte, 16))
			errc <- err
		}()
		// As the transport's abort does; before or after the read waits,
		// the read must end.
		c.SetDeadline(time.Unix(1, 0))
		if err := <-errc; ClassifyError(err) != ClassTimeout {
			t.Errorf("read: %v, want a timeout", err)
		}
	})
	t.Run("closed", func(t *testing.T) {
		c, _ := pollPair(t)
		c.Close()
		if _, err := c.Read(make([]byte, 16)); !errors.Is(err, net.ErrClosed) {
			t.Errorf("read on a closed conn: %v", err)
		}
	})
}

func TestPollConnDialErrors(t *testing.T) {
	p, err := newPoller()
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	addr, err := lowport.Addr() // nothing listens there
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.dial(context.Background(), netip.MustParseAddrPort(addr), time.Now().Add(time.Second))
	if ClassifyError(err) != ClassRefused {
		t.Errorf("dial to a closed port: %v (class %s), want refused", err, ClassifyError(err))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// TEST-NET-1 (RFC 5737): never routed, so the connect would hang.
	_, err = p.dial(ctx, netip.MustParseAddrPort("192.0.2.1:80"), time.Now().Add(time.Second))
	if err == nil {
		t.Error("dial with a cancelled context succeeded")
	}
}

// Open-model runs use pollConns (and the read gate) unless connections are
// capped; closed-model runs use them for their event loops; capped
// open-model runs use ordinary connections.
func TestPollConnsOnlyWhereReadsMayWait(t *testing.T) {
	srv := lowport.NewServer(t, http.HandlerFunc(okHandler))
	tests := []struct {
		name  string
		cfg   Config
		sched Schedule
		poll  bool
	}{
		{name: "open", cfg: Config{}, sched: Constant(2000), poll: true},
		{name: "open, capped connections", cfg: Config{Connections: 4}, sched: Constant(2000), poll: false},
		{name: "closed", cfg: Config{}, sched: Closed(2), poll: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Source = urls(t, srv.URL+"/")
			e := newEngine(t, cfg)
			res := mustRun(t, e, tc.sched, Bound{Duration: 100 * time.Millisecond}, nil)
			if tot := res.Total(); tot.Requests == 0 || tot.Errors != 0 {
				t.Fatalf("requests %d, errors %v", tot.Requests, tot.ErrorsByClass())
			}
			tr := e.tr.(*h1Transport)
			var polled, plain int
			for _, o := range tr.origins {
				for _, c := range o.idle {
					if _, ok := c.nc.(*pollConn); ok {
						polled++
					} else {
						plain++
					}
				}
			}
			if tc.poll && (polled == 0 || plain != 0) || !tc.poll && polled != 0 {
				t.Errorf("idle connections: %d pollConns, %d plain; want pollConns only: %v", polled, plain, tc.poll)
			}
		})
	}
}

func TestReadGate(t *testing.T) {
	start := time.Now()
	far := start.Add(time.Hour)
	g := newReadGate(start, time.Millisecond)
	g.wait(far) // shut: returns at once
	g.release(time.Since(start) + time.Hour)
	g.wait(far) // the pacer wakes far later: returns at once
	g.release(time.Since(start))
	g.wait(time.Now().Add(time.Millisecond)) // the request's deadline is near: at once
	done := make(chan struct{})
	go func() {
		g.wait(far) // the pacer wakes within the resolution: waits for it
		close(done)
	}()
	// Released by the next wake-up or by close, whichever the waiter
	// reaches; either way it must return.
	g.release(time.Since(start))
	g.close()
	<-done
}

// After a stall piles up requests in flight, the connections and workers
// it took are let go once the load is back to normal: memory follows the
// load down.
func TestIdleConnectionsTrimmedAfterBurst(t *testing.T) {
	const piled = 60
	stall := make(chan struct{})
	var waiting atomic.Int64
	srv := lowport.NewServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-stall:
		default:
			if waiting.Add(1) == piled {
				close(stall) // enough piled up: answer them all
			}
			<-stall
		}
		w.Write([]byte("ok"))
	}))
	e := newEngine(t, Config{Source: urls(t, srv.URL+"/"), Window: 20 * time.Millisecond})
	res := mustRun(t, e, Constant(1000), Bound{Duration: 400 * time.Millisecond}, nil)
	if tot := res.Total(); tot.Errors != 0 || tot.Requests < 300 {
		t.Fatalf("requests %d, errors %v", tot.Requests, tot.ErrorsByClass())
	}
	tr := e.tr.(*h1Transport)
	idle := 0
	for _, o := range tr.origins {
		idle += len(o.idle)
	}
	if idle >= piled {
		t.Errorf("%d idle connections kept after the burst of %d; want them trimmed", idle, piled)
	}
}
