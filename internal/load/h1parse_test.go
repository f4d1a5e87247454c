package load

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestReadResponse(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		head     bool  // a HEAD request
		maxBody  int64 // 0: 1 MiB
		status   int
		body     int64
		reusable bool
		wantErr  error // nil, errProtocol, io.ErrUnexpectedEOF
		rest     string
	}{
		{name: "content-length", in: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloNEXT", status: 200, body: 5, reusable: true, rest: "NEXT"},
		{name: "no reason phrase", in: "HTTP/1.1 204\r\n\r\n", status: 204, reusable: true},
		{name: "bare LF", in: "HTTP/1.1 200 OK\nContent-Length: 2\n\nokX", status: 200, body: 2, reusable: true, rest: "X"},
		{name: "chunked", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\nNEXT", status: 200, body: 15, reusable: true, rest: "NEXT"},
		{name: "chunked wins over length", in: "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", status: 200, body: 2, reusable: true},
		{name: "connection close", in: "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", status: 200, body: 2},
		{name: "http/1.0 closes", in: "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", status: 200, body: 2},
		{name: "http/1.0 keep-alive", in: "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", status: 200, body: 2, reusable: true},
		{name: "read to close", in: "HTTP/1.1 200 OK\r\n\r\nall of this", status: 200, body: 11},
		{name: "head has no body", in: "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\nNEXT", head: true, status: 200, reusable: true, rest: "NEXT"},
		{name: "304 has no body", in: "HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n", status: 304, reusable: true},
		{name: "1xx skipped", in: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\nHTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n", status: 503, reusable: true},
		{name: "body over the bound", in: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789", maxBody: 4, status: 200, body: 4, rest: "456789"},
		{name: "chunked over the bound", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n", maxBody: 4, status: 200, body: 4},
		{name: "obs-fold ignored", in: "HTTP/1.1 200 OK\r\nX-A: 1\r\n  continued\r\nContent-Length: 0\r\n\r\n", status: 200, reusable: true},
		{name: "short body", in: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", status: 200, body: 3, wantErr: io.ErrUnexpectedEOF},
		{name: "empty", in: "", wantErr: io.ErrUnexpectedEOF},
		{name: "truncated head", in: "HTTP/1.1 200 OK\r\nContent-Le", wantErr: io.ErrUnexpectedEOF},
		{name: "not http", in: "SSH-2.0-OpenSSH\r\n\r\n", wantErr: errProtocol},
		{name: "http/2 preface answer", in: "HTTP/2 200\r\n\r\n", wantErr: errProtocol},
		{name: "bad status", in: "HTTP/1.1 2x0 OK\r\n\r\n", wantErr: errProtocol},
		{name: "status below 100", in: "HTTP/1.1 099 OK\r\n\r\n", wantErr: errProtocol},
		{name: "switching protocols", in: "HTTP/1.1 101 Switching\r\n\r\n", wantErr: errProtocol},
		{name: "negative length", in: "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", wantErr: errProtocol},
		{name: "conflicting lengths", in: "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", wantErr: errProtocol},
		{name: "huge length", in: "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n", wantErr: errProtocol},
		{name: "header without colon", in: "HTTP/1.1 200 OK\r\nNoColon\r\n\r\n", wantErr: errProtocol},
		{name: "bad chunk size", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", status: 200, wantErr: errProtocol},
		{name: "chunk without CRLF", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokXX0\r\n\r\n", status: 200, body: 2, wantErr: errProtocol},
		{name: "too many 1xx", in: strings.Repeat("HTTP/1.1 100 Continue\r\n\r\n", max1xx+2), wantErr: errProtocol},
		{name: "head too large", in: "HTTP/1.1 200 OK\r\n" + strings.Repeat("X-Pad: "+strings.Repeat("a", 1000)+"\r\n", 70) + "\r\n", wantErr: errProtocol},
		{name: "line too long", in: "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("a", readBufSize) + "\r\n\r\n", wantErr: errProtocol},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			maxBody := tc.maxBody
			if maxBody == 0 {
				maxBody = 1 << 20
			}
			br := bufio.NewReaderSize(strings.NewReader(tc.in), readBufSize)
			h, _, err := readHead(br)
			var n int64
			reusable := false
			if err == nil {
				n, reusable, err = readBody(br, h, tc.head, maxBody)
			}
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if h.status != tc.status || n != tc.body || reusable != tc.reusable {
				t.Errorf("status %d body %d reusable %v, want %d %d %v", h.status, n, reusable, tc.status, tc.body, tc.reusable)
			}
			if tc.rest != "" {
				rest, _ := io.ReadAll(br)
				if string(rest) != tc.rest {
					t.Errorf("left %q unread, want %q", rest, tc.rest)
				}
			}
		})
	}
}

func TestStaleConnectionDetection(t *testing.T) {
	// A connection that ends before any byte of a response is stale (the
	// server closed it while idle); one that ends mid-head is not.
	for _, tc := range []struct {
		in      string
		started bool
	}{{"", false}, {"HTTP/1.1 2", true}} {
		_, started, err := readHead(bufio.NewReader(strings.NewReader(tc.in)))
		if err == nil || started != tc.started {
			t.Errorf("%q: started %v err %v, want started %v and an error", tc.in, started, err, tc.started)
		}
	}
}

func TestSplitURL(t *testing.T) {
	tests := []struct {
		in, key, authority, uri string
		tls                     bool
		bad                     bool
	}{
		{in: "http://127.0.0.1:8080/a/b?x=1", key: "http://127.0.0.1:8080", authority: "127.0.0.1:8080", uri: "/a/b?x=1"},
		{in: "https://example.com", key: "https://example.com", authority: "example.com", uri: "/", tls: true},
		{in: "http://h?q=1#frag", key: "http://h", authority: "h", uri: "/?q=1"},
		{in: "http://[::1]:80/p#f", key: "http://[::1]:80", authority: "[::1]:80", uri: "/p"},
		{in: "ftp://h/", bad: true},
		{in: "http:///path", bad: true},
		{in: "http://user:pw@h/", bad: true},
		{in: "http://h/a b", bad: true},
		{in: "http://h/a\r\nX: y", bad: true},
	}
	for _, tc := range tests {
		key, auth, uri, tls, err := splitURL(tc.in)
		if tc.bad {
			if !errors.Is(err, errBadRequest) {
				t.Errorf("%q: err = %v, want errBadRequest", tc.in, err)
			}
			continue
		}
		if err != nil || key != tc.key || auth != tc.authority || uri != tc.uri || tls != tc.tls {
			t.Errorf("%q: got %q %q %q %v %v", tc.in, key, auth, uri, tls, err)
		}
	}
}

// FuzzReadResponse feeds arbitrary bytes to the response reader: it must
// not panic, must not read past what it was given plus nothing, and must
// honour its bounds.
func FuzzReadResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 404 Not Found\r\nConnection: keep-alive\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\nffffffffffffff\r\n",
		"HTTP/1.1 304\n\n",
	} {
		f.Add([]byte(s), false)
	}
	const maxBody = 1 << 12
	f.Fuzz(func(t *testing.T, in []byte, head bool) {
		if len(in) > 1<<20 {
			return // memory bound on the input itself
		}
		br := bufio.NewReaderSize(strings.NewReader(string(in)), readBufSize)
		h, _, err := readHead(br)
		if err != nil {
			return
		}
		if h.status < 100 || h.status > 999 {
			t.Fatalf("status %d accepted", h.status)
		}
		if h.headBytes > maxHeadBytes+readBufSize {
			t.Fatalf("head of %d bytes accepted", h.headBytes)
		}
		n, _, _ := readBody(br, h, head, maxBody)
		if n < 0 || n > maxBody || n > int64(len(in)) {
			t.Fatalf("body of %d bytes from %d bytes of input (bound %d)", n, len(in), maxBody)
		}
	})
}
