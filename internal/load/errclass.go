package load

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
)

// Class is what became of a request: nothing worth counting (ClassNone: a
// 1xx–3xx answer), a transport error, or a 4xx/5xx answer.
type Class uint8

// Classes of outcome (CONTRACT.md §3). Transport errors and 5xx are errors;
// 4xx are counted but are not errors.
const (
	ClassNone    Class = iota
	ClassTimeout       // the per-request timeout expired
	ClassRefused       // connection refused
	ClassReset         // connection reset, closed or aborted mid-request
	ClassDNS           // the host name did not resolve
	ClassTLS           // handshake or certificate failure
	ClassOther         // any other transport or protocol error
	Class4xx           // answered with a 4xx status (not an error)
	Class5xx           // answered with a 5xx status
	NumClasses
)

var classNames = [NumClasses]string{"", "timeout", "refused", "reset", "dns", "tls", "other", "4xx", "5xx"}

// String is the class's name as written in JSON ("timeout", "5xx", ...).
func (c Class) String() string {
	if c < NumClasses {
		return classNames[c]
	}
	return "invalid"
}

// IsError reports whether the class counts as an error: a transport error
// or a 5xx answer.
func (c Class) IsError() bool { return c != ClassNone && c != Class4xx && c < NumClasses }

// IsTransport reports whether the class is a transport error (no answer).
func (c Class) IsTransport() bool { return c >= ClassTimeout && c <= ClassOther }

// classOf classifies an answer's status, or a transport error when err is
// not nil.
func classOf(status int, err error) Class {
	if err != nil {
		return ClassifyError(err)
	}
	switch {
	case status >= 500:
		return Class5xx
	case status >= 400:
		return Class4xx
	}
	return ClassNone
}

// tlsError marks an error that happened during a TLS handshake.
type tlsError struct{ err error }

func (e *tlsError) Error() string { return "tls: " + e.err.Error() }
func (e *tlsError) Unwrap() error { return e.err }

// ClassifyError maps a transport error to its class.
func ClassifyError(err error) Class {
	var (
		dnsErr  *net.DNSError
		netErr  net.Error
		tlsErr  *tlsError
		recErr  tls.RecordHeaderError
		alert   tls.AlertError
		verify  *tls.CertificateVerificationError
		unknown x509.UnknownAuthorityError
		host    x509.HostnameError
		invalid x509.CertificateInvalidError
	)
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &netErr) && netErr.Timeout():
		return ClassTimeout
	case errors.As(err, &dnsErr):
		return ClassDNS
	case errors.Is(err, syscall.ECONNREFUSED):
		return ClassRefused
	case errors.As(err, &recErr), errors.As(err, &alert), errors.As(err, &verify),
		errors.As(err, &unknown), errors.As(err, &host), errors.As(err, &invalid):
		return ClassTLS
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNABORTED),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, http.ErrServerClosed):
		return ClassReset
	case errors.As(err, &tlsErr):
		return ClassTLS
	}
	// net/http's bundled HTTP/2 does not export its error types.
	if m := err.Error(); strings.Contains(m, "GOAWAY") || strings.Contains(m, "stream error") ||
		strings.Contains(m, "connection reset") || strings.Contains(m, "server closed") {
		return ClassReset
	}
	return ClassOther
}
