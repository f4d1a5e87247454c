package lowport

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
)

func TestNewServerUsesLowPort(t *testing.T) {
	srv := NewServer(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }))
	_, p, _ := net.SplitHostPort(srv.Listener.Addr().String())
	port, _ := strconv.Atoi(p)
	if port < Min || port > Max {
		t.Fatalf("port %d outside [%d,%d]", port, Min, Max)
	}
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "ok" {
		t.Fatalf("body %q", b)
	}
}
