package load

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Bounds on an HTTP/1.1 response head (untrusted input).
const (
	// maxHeadBytes bounds a response's status line and headers together;
	// net/http's client allows 10 MB, servers commonly 8–16 KB. 64 KB is
	// ample for any real API and keeps a hostile server cheap.
	maxHeadBytes = 64 << 10
	// max1xx bounds informational (1xx) responses before the final one.
	max1xx = 16
	// readBufSize is the per-connection read buffer; a single header line
	// longer than this is rejected.
	readBufSize = 16 << 10
)

// errProtocol marks a response that is not valid HTTP/1.1.
var errProtocol = errors.New("malformed http response")

// respHead is what the body reader needs from a response's head.
type respHead struct {
	status        int
	contentLength int64 // -1 when absent
	chunked       bool
	close         bool // the connection cannot be reused afterwards
	headBytes     int64
}

func protoErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errProtocol}, args...)...)
}

// readHead reads a response's status line and headers, skipping 1xx
// informational responses. started reports whether any byte was read (a
// connection that fails before any byte is merely stale).
func readHead(br *bufio.Reader) (h respHead, started bool, err error) {
	var skipped int64 // bytes of the informational heads before
	for range max1xx + 1 {
		h, err = readOneHead(br, &started)
		h.headBytes += skipped
		skipped = h.headBytes
		if err != nil {
			return h, started, err
		}
		if h.status >= 200 || h.status == 101 {
			if h.status == 101 {
				return h, true, protoErr("unexpected 101 switching protocols")
			}
			return h, true, nil
		}
	}
	return h, true, protoErr("more than %d informational responses", max1xx)
}

func readOneHead(br *bufio.Reader, started *bool) (respHead, error) {
	h := respHead{contentLength: -1}
	line, err := br.ReadSlice('\n')
	if len(line) > 0 {
		*started = true
	}
	if err != nil {
		return h, lineErr(err)
	}
	h.headBytes = int64(len(line))
	status, http10, err := parseStatusLine(trimEOL(line))
	if err != nil {
		return h, err
	}
	h.status = status
	if http10 {
		h.close = true
	}
	for {
		line, err = br.ReadSlice('\n')
		if err != nil {
			return h, lineErr(err)
		}
		h.headBytes += int64(len(line))
		if h.headBytes > maxHeadBytes {
			return h, protoErr("response head over %d bytes", maxHeadBytes)
		}
		l := trimEOL(line)
		if len(l) == 0 {
			break
		}
		if l[0] == ' ' || l[0] == '\t' {
			continue // obsolete line folding: a continuation of a header we ignore
		}
		colon := bytes.IndexByte(l, ':')
		if colon <= 0 {
			return h, protoErr("header line without a name")
		}
		name, value := l[:colon], bytes.TrimSpace(l[colon+1:])
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			n, ok := parseContentLength(value)
			if !ok || (h.contentLength >= 0 && h.contentLength != n) {
				return h, protoErr("bad content-length %q", truncate(value))
			}
			h.contentLength = n
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			// Only chunked as the last coding frames the body; anything
			// else is read until the server closes.
			h.chunked = lastTokenIs(value, "chunked")
			if !h.chunked {
				h.close = true
			}
		case bytes.EqualFold(name, []byte("Connection")):
			if hasToken(value, "close") {
				h.close = true
			} else if http10 && hasToken(value, "keep-alive") {
				h.close = false
			}
		}
	}
	if h.chunked {
		h.contentLength = -1 // RFC 9112 §6.3: chunked wins over Content-Length
	}
	return h, nil
}

// lineErr turns a bufio error on a head line into a transport or protocol error.
func lineErr(err error) error {
	switch {
	case errors.Is(err, bufio.ErrBufferFull):
		return protoErr("header line over %d bytes", readBufSize)
	case errors.Is(err, io.EOF):
		return io.ErrUnexpectedEOF
	}
	return err
}

func trimEOL(b []byte) []byte {
	b = b[:len(b)-1] // the '\n'
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	return b
}

// parseStatusLine parses "HTTP/1.x NNN reason".
func parseStatusLine(l []byte) (status int, http10 bool, err error) {
	if len(l) < 12 || !bytes.HasPrefix(l, []byte("HTTP/1.")) || l[8] != ' ' || (len(l) > 12 && l[12] != ' ') {
		return 0, false, protoErr("bad status line %q", truncate(l))
	}
	switch l[7] {
	case '0':
		http10 = true
	case '1':
	default:
		return 0, false, protoErr("unsupported protocol %q", truncate(l[:8]))
	}
	for _, c := range l[9:12] {
		if c < '0' || c > '9' {
			return 0, false, protoErr("bad status code %q", truncate(l[9:12]))
		}
		status = status*10 + int(c-'0')
	}
	if status < 100 {
		return 0, false, protoErr("bad status code %d", status)
	}
	return status, http10, nil
}

// maxContentLength bounds a Content-Length so arithmetic cannot overflow.
const maxContentLength = 1 << 62

func parseContentLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 19 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, n <= maxContentLength
}

func hasToken(v []byte, tok string) bool {
	for len(v) > 0 {
		var part []byte
		part, v, _ = bytes.Cut(v, []byte(","))
		if bytes.EqualFold(bytes.TrimSpace(part), []byte(tok)) {
			return true
		}
	}
	return false
}

func lastTokenIs(v []byte, tok string) bool {
	if i := bytes.LastIndexByte(v, ','); i >= 0 {
		v = v[i+1:]
	}
	return bytes.EqualFold(bytes.TrimSpace(v), []byte(tok))
}

func truncate(b []byte) string {
	const max = 40
	if len(b) > max {
		return string(b[:max]) + "..."
	}
	return string(b)
}

// readBody reads (and discards) a response body framed as h says, at most
// maxBody bytes. It returns the bytes read and whether the connection can
// carry another request.
func readBody(br *bufio.Reader, h respHead, head bool, maxBody int64) (n int64, reusable bool, err error) {
	switch {
	case head || h.status == 204 || h.status == 304:
		return 0, !h.close, nil
	case h.chunked:
		return readChunked(br, maxBody, !h.close)
	case h.contentLength >= 0:
		want := h.contentLength
		over := false
		if want > maxBody {
			want, over = maxBody, true
		}
		n, err := discard(br, want)
		if err != nil {
			return n, false, err
		}
		return n, !h.close && !over, nil
	}
	// No framing: the body runs until the server closes the connection.
	n, err = discard(br, maxBody)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = nil
	}
	return n, false, err
}

// discard skips n bytes; an early end is io.ErrUnexpectedEOF.
func discard(br *bufio.Reader, n int64) (int64, error) {
	var done int64
	for done < n {
		step := n - done
		if step > 1<<30 {
			step = 1 << 30
		}
		k, err := br.Discard(int(step))
		done += int64(k)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return done, err
		}
	}
	return done, nil
}

// maxChunkLine bounds a chunk-size line (size and extensions).
const maxChunkLine = 4 << 10

func readChunked(br *bufio.Reader, maxBody int64, keep bool) (int64, bool, error) {
	var n int64
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return n, false, lineErr(err)
		}
		if len(line) > maxChunkLine {
			return n, false, protoErr("chunk line over %d bytes", maxChunkLine)
		}
		size, err := parseChunkSize(trimEOL(line))
		if err != nil {
			return n, false, err
		}
		if size == 0 {
			break
		}
		if n+size > maxBody {
			k, err := discard(br, maxBody-n)
			return n + k, false, err
		}
		k, err := discard(br, size)
		n += k
		if err != nil {
			return n, false, err
		}
		crlf, err := br.ReadSlice('\n')
		if err != nil {
			return n, false, lineErr(err)
		}
		if len(trimEOL(crlf)) != 0 {
			return n, false, protoErr("chunk not followed by CRLF")
		}
	}
	// Trailers, up to the empty line.
	var trailer int64
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return n, false, lineErr(err)
		}
		trailer += int64(len(line))
		if trailer > maxHeadBytes {
			return n, false, protoErr("trailers over %d bytes", maxHeadBytes)
		}
		if len(trimEOL(line)) == 0 {
			return n, keep, nil
		}
	}
}

func parseChunkSize(l []byte) (int64, error) {
	if i := bytes.IndexByte(l, ';'); i >= 0 {
		l = l[:i]
	}
	l = bytes.TrimRight(l, " \t")
	if len(l) == 0 || len(l) > 15 {
		return 0, protoErr("bad chunk size %q", truncate(l))
	}
	var n int64
	for _, c := range l {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, protoErr("bad chunk size %q", truncate(l))
		}
		n = n<<4 | int64(d)
	}
	return n, nil
}
