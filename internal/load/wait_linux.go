package load

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// timerfdWaiter sleeps on a Linux timerfd registered with Go's network
// poller: the kernel wakes the poller when the timer fires (timer slack is
// 50 µs by default), where a Go timer would wait for the poller's next
// millisecond tick.
type timerfdWaiter struct {
	f      *os.File
	fd     int
	offset int64 // CLOCK_MONOTONIC nanoseconds at the run's start
	buf    [8]byte
	stop   func() bool
}

// newPreciseWaiter returns a waiter whose waits end early once ctx is done.
func newPreciseWaiter(ctx context.Context, start time.Time) (preciseWaiter, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("timerfd: %w", err)
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("clock_gettime: %w", err)
	}
	// Go's monotonic clock is CLOCK_MONOTONIC too, so the two never drift.
	w := &timerfdWaiter{fd: fd, offset: ts.Nano() - int64(time.Since(start))}
	w.f = os.NewFile(uintptr(fd), "timerfd")
	w.stop = context.AfterFunc(ctx, func() { w.f.SetReadDeadline(time.Unix(1, 0)) })
	return w, nil
}

func (w *timerfdWaiter) waitUntil(t time.Duration) error {
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(w.offset + int64(t))}
	if err := unix.TimerfdSettime(w.fd, unix.TFD_TIMER_ABSTIME, &spec, nil); err != nil {
		return fmt.Errorf("timerfd_settime: %w", err)
	}
	_, err := w.f.Read(w.buf[:])
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil // ctx is done; the caller sees it
	}
	return err
}

func (w *timerfdWaiter) close() error {
	w.stop()
	return w.f.Close()
}
