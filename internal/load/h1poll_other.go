//go:build !linux

package load

import (
	"context"
	"errors"
	"net"
	"time"
)

// Outside Linux every connection is an ordinary net.Conn: no private
// poller, no kernel receive timestamps.

type poller struct{}

type pollConn struct{ net.Conn }

func (*pollConn) rxStamp() int64 { return 0 }

func (*pollConn) gated() bool { return false }

func (t *h1Transport) pollerFor(*h1Origin) *poller { return nil }

func (t *h1Transport) dialPoll(context.Context, *poller, *h1Origin, time.Time) (net.Conn, error) {
	return nil, errors.New("no private poller on this system")
}

func (t *h1Transport) closePoller() {}
