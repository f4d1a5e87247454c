// Package lowport listens on loopback ports below the kernel's ephemeral
// range. Servers under load test must not sit on ports the kernel hands out
// to client sockets (32768 and up on Linux), or the generator's own
// connections collide with them.
package lowport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
)

// Range of ports tried: below Linux's default ip_local_port_range (32768+)
// and above the common well-known and registered services.
const (
	Min = 20000
	Max = 32767
)

// Listen listens on 127.0.0.1 at a random free port in [Min, Max].
func Listen() (net.Listener, error) {
	var last error
	for range 200 {
		port := Min + rand.IntN(Max-Min+1)
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			return l, nil
		}
		last = err
		if !errors.Is(err, syscall.EADDRINUSE) && !errors.Is(err, syscall.EACCES) {
			return nil, fmt.Errorf("listen below %d: %w", Max+1, err)
		}
	}
	return nil, fmt.Errorf("listen below %d: no free port: %w", Max+1, last)
}

// Addr returns a free 127.0.0.1:port below the ephemeral range for a server
// that opens its own listener. The port is free when returned, not reserved.
func Addr() (string, error) {
	l, err := Listen()
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	l.Close()
	return addr, nil
}

// NewServer starts an httptest server for h on a low loopback port and
// closes it when the test ends.
func NewServer(tb testing.TB, h http.Handler) *httptest.Server {
	tb.Helper()
	srv := httptest.NewUnstartedServer(h)
	l, err := Listen()
	if err != nil {
		tb.Fatal(err)
	}
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	tb.Cleanup(srv.Close)
	return srv
}
