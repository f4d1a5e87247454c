// Command server is the bench's target: a minimal HTTP server that answers
// "ok" (after --sleep), and can stall every request for --stall-for starting
// --stall-at after the first request, to test coordinated omission.
// GET /__stats answers the requests served since the last /__stats (so the
// bench counts what each tool really sent) and restarts the stall clock.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:20080", "listen address (keep the port below 32768)")
	sleep := flag.Duration("sleep", 0, "answer each request after this long")
	stallAt := flag.Duration("stall-at", 0, "stall, this long after the first request (0: never)")
	stallFor := flag.Duration("stall-for", time.Second, "how long the stall lasts")
	flag.Parse()

	var (
		mu    sync.Mutex
		first time.Time
		count atomic.Int64
	)
	body := []byte("ok")
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/__stats" {
			mu.Lock()
			first = time.Time{}
			mu.Unlock()
			fmt.Fprintf(w, "%d\n", count.Swap(0))
			return
		}
		count.Add(1)
		mu.Lock()
		if first.IsZero() {
			first = time.Now()
		}
		first := first
		mu.Unlock()
		if *stallAt > 0 {
			start := first.Add(*stallAt)
			if now := time.Now(); now.After(start) && now.Before(start.Add(*stallFor)) {
				time.Sleep(time.Until(start.Add(*stallFor)))
			}
		}
		if *sleep > 0 {
			time.Sleep(*sleep)
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Write(body)
	})
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "server:", err)
		os.Exit(1)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(l); err != nil && err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, "server:", err)
		os.Exit(1)
	}
}
