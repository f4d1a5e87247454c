// Command zoo serves a shop with switchable bottlenecks, seeds its
// database, and lists its modes; see examples/zoo/README.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/chokepoint/chokepoint/examples/zoo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := zoo.Main(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}
