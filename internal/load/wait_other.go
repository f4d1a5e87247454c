//go:build !linux

package load

import (
	"context"
	"errors"
	"time"
)

func newPreciseWaiter(context.Context, time.Time) (preciseWaiter, error) {
	return nil, errors.New("no precise waiter on this system")
}
