//go:build !linux

package load

// closedLoop is Linux only (epoll); elsewhere closed-model users run on
// goroutines.
type closedLoop struct{}

func (rs *runState) newClosedLoops(*closedState) []*closedLoop { return nil }

func (*closedLoop) join(*worker) bool { return false }

func (*closedLoop) wake() {}
