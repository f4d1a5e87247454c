package load

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chokepoint/chokepoint/internal/lowport"
)

// rawServer answers every request on 127.0.0.1 with answer(n) for the n-th
// request it reads (from 0, over all connections), written in two pieces
// a millisecond apart so that answers arrive split; a nil answer leaves the
// request unanswered until the client gives up, closeAfter(n) closes the
// connection after the answer.
func rawServer(t *testing.T, answer func(n int64) []byte, closeAfter func(n int64) bool) string {
	t.Helper()
	ln, err := lowport.Listen()
	if err != nil {
		t.Fatal(err)
	}
	var count atomic.Int64
	var wg sync.WaitGroup
	done := make(chan struct{})
	t.Cleanup(func() {
		close(done)
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				go func() { <-done; c.Close() }()
				br := bufio.NewReader(c)
				for {
					for { // the request head; GETs have no body
						l, err := br.ReadSlice('\n')
						if err != nil {
							return
						}
						if len(bytes.TrimRight(l, "\r\n")) == 0 {
							break
						}
					}
					n := count.Add(1) - 1
					a := answer(n)
					if a == nil {
						continue // unanswered: the client times out and closes
					}
					half := len(a) / 2
					if _, err := c.Write(a[:half]); err != nil {
						return
					}
					time.Sleep(time.Millisecond) // server behaviour: the answer arrives in two parts
					if _, err := c.Write(a[half:]); err != nil {
						return
					}
					if closeAfter != nil && closeAfter(n) {
						return
					}
				}
			}()
		}
	}()
	return "http://" + ln.Addr().String() + "/"
}

// The closed model's event loops read every kind of answer as the
// goroutine path does: the same statuses, bytes and error classes, with
// what they cannot finish themselves handed back to a goroutine.
func TestClosedLoopAnswers(t *testing.T) {
	const big = 200 << 10 // over loopMaxBuffered
	cl := func(body string) []byte {
		return fmt.Appendf(nil, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	}
	chunked := func(parts ...string) []byte {
		var b bytes.Buffer
		b.WriteString("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
		for _, p := range parts {
			fmt.Fprintf(&b, "%x\r\n%s\r\n", len(p), p)
		}
		b.WriteString("0\r\n\r\n")
		return b.Bytes()
	}
	same := func(b []byte) func(int64) []byte { return func(int64) []byte { return b } }
	headLen := func(b []byte) int64 { return int64(bytes.Index(b, []byte("\r\n\r\n")) + 4) }
	small := cl("ok")
	chunk := chunked(strings.Repeat("a", 3000), strings.Repeat("b", 5000))
	large := cl(strings.Repeat("x", big))
	largeChunked := chunked(strings.Repeat("y", big/2), strings.Repeat("z", big/2))
	early := []byte("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 503 Busy\r\nContent-Length: 4\r\n\r\nbusy")
	notModified := []byte("HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n")
	toClose := []byte("HTTP/1.1 200 OK\r\n\r\nuntil the end")
	const requests = 30
	tests := []struct {
		name       string
		answer     func(int64) []byte
		closeAfter func(int64) bool
		in         int64 // bytes in per request
		class      Class
		ok         int64 // requests of class
		looped     bool  // some answers read by a loop
	}{
		{name: "content-length", answer: same(small), in: int64(len(small)), class: ClassNone, ok: requests, looped: true},
		{name: "chunked", answer: same(chunk), in: headLen(chunk) + 8000, class: ClassNone, ok: requests, looped: true},
		{name: "informational first", answer: same(early), in: int64(len(early)), class: Class5xx, ok: requests, looped: true},
		{name: "304 without a body", answer: same(notModified), in: int64(len(notModified)), class: ClassNone, ok: requests, looped: true},
		{name: "larger than a loop buffers", answer: same(large), in: int64(len(large)), class: ClassNone, ok: requests},
		{name: "chunked, larger than a loop buffers", answer: same(largeChunked), in: headLen(largeChunked) + big, class: ClassNone, ok: requests},
		{name: "until the server closes", answer: same(toClose), closeAfter: func(int64) bool { return true }, in: int64(len(toClose)), class: ClassNone, ok: requests},
		// A keep-alive connection the server closes after every third
		// answer: the next request on it is retried on a fresh one.
		{name: "stale connections", answer: same(small), closeAfter: func(n int64) bool { return n%3 == 2 }, in: int64(len(small)), class: ClassNone, ok: requests, looped: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u := rawServer(t, tc.answer, tc.closeAfter)
			e := newEngine(t, Config{Source: urls(t, u), Timeout: 2 * time.Second})
			res := mustRun(t, e, Closed(3), Bound{Duration: time.Minute, MaxRequests: requests}, nil)
			tot := res.Total()
			if tot.Requests != requests || tot.Classes[tc.class] != tc.ok {
				t.Fatalf("requests %d, classes %v: want %d, %d of them %q", tot.Requests, tot.ErrorsByClass(), requests, tc.ok, tc.class)
			}
			if tot.BytesIn != requests*tc.in {
				t.Errorf("bytes in %d, want %d (%d per request)", tot.BytesIn, requests*tc.in, tc.in)
			}
			if tc.looped && res.looped == 0 {
				t.Errorf("no answer read by an event loop")
			}
			t.Logf("%d of %d answers read by event loops", res.looped, tot.Requests)
		})
	}
}

// Requests the server never answers time out in the loop as on the
// goroutine path; the others go on.
func TestClosedLoopTimeouts(t *testing.T) {
	small := []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	var served []int64
	var mu sync.Mutex
	u := rawServer(t, func(n int64) []byte {
		mu.Lock()
		served = append(served, n)
		mu.Unlock()
		if n%10 == 5 {
			return nil
		}
		return small
	}, nil)
	e := newEngine(t, Config{Source: urls(t, u), Timeout: 300 * time.Millisecond})
	res := mustRun(t, e, Closed(2), Bound{Duration: time.Minute, MaxRequests: 30}, nil)
	tot := res.Total()
	if tot.Requests != 30 || tot.Classes[ClassTimeout] != 3 || tot.Classes[ClassNone] != 27 {
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("requests %d, classes %v: want 30, 3 timeouts (server: %v)", tot.Requests, tot.ErrorsByClass(), served)
	}
	if res.looped == 0 {
		t.Errorf("no answer read by an event loop")
	}
}

// Ctrl-C while users wait in an event loop: the run returns after the
// drain grace with what was answered, the rest counted as canceled.
func TestClosedLoopInterrupted(t *testing.T) {
	small := []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	const answered = 20
	hung := make(chan struct{}, 8)
	u := rawServer(t, func(n int64) []byte {
		if n < answered {
			return small
		}
		select {
		case hung <- struct{}{}:
		default:
		}
		return nil
	}, nil)
	e := newEngine(t, Config{Source: urls(t, u), DrainGrace: 100 * time.Millisecond, Timeout: time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-hung
		cancel()
	}()
	res, err := e.Run(ctx, Closed(2), Bound{Duration: time.Minute}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Interrupted || res.Requests() != answered || res.Canceled == 0 || res.looped == 0 {
		t.Errorf("interrupted %v, requests %d (want %d), canceled %d, looped %d", res.Interrupted, res.Requests(), answered, res.Canceled, res.looped)
	}
}

// An answer that comes after the request's deadline is a timeout, in a loop
// as on the goroutine path, however complete it is when read.
func TestClosedLoopLateAnswersTimeOut(t *testing.T) {
	const timeout = 100 * time.Millisecond
	small := []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	u := rawServer(t, func(n int64) []byte {
		if n%3 == 2 {
			time.Sleep(timeout + 5*time.Millisecond) // server behaviour: answers just late
		}
		return small
	}, nil)
	e := newEngine(t, Config{Source: urls(t, u), Timeout: timeout})
	// One user: its first request goes from a goroutine, then it joins a
	// loop, which reads the next answer and meets the late one.
	res := mustRun(t, e, Closed(1), Bound{Duration: time.Minute, MaxRequests: 9}, nil)
	tot := res.Total()
	if tot.Requests != 9 || tot.Classes[ClassTimeout] != 3 || tot.Classes[ClassNone] != 6 {
		t.Fatalf("requests %d, classes %v: want 9, the 3 late ones timeouts", tot.Requests, tot.ErrorsByClass())
	}
	if res.looped == 0 {
		t.Errorf("no answer read by an event loop")
	}
}
