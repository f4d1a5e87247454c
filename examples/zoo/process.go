package zoo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/chokepoint/chokepoint/internal/lowport"
)

// processStartTimeout bounds waiting for a zoo process to answer /health.
const processStartTimeout = 30 * time.Second

// Process is a zoo running as a child process (the zoo binary's serve).
type Process struct {
	cmd  *exec.Cmd
	url  string
	done chan error
}

// StartProcess runs binary (a built zoo command) as "serve" with cfg and
// returns once it answers. cfg.Addr empty picks a free low port; Logger
// and Isolated are ignored (the process logs to its stderr, which goes to
// stderr here when non-nil).
func StartProcess(ctx context.Context, binary string, cfg Config, stderr io.Writer) (*Process, error) {
	if err := cfg.Validate(); err != nil && !errors.Is(err, ErrNeedsProcess) {
		return nil, fmt.Errorf("zoo config: %w", err)
	}
	addr := cfg.Addr
	if addr == "" {
		a, err := lowport.Addr()
		if err != nil {
			return nil, err
		}
		addr = a
	}
	args := []string{"serve", "--listen", addr, "--bottleneck", strings.Join(cfg.modeNames(), ",")}
	if len(cfg.modeNames()) == 0 {
		args[4] = None
	}
	if cfg.Fixed {
		args = append(args, "--fixed")
	}
	if cfg.OTLPEndpoint != "" {
		args = append(args, "--otlp", cfg.OTLPEndpoint)
	}
	if cfg.PoolSize > 0 {
		args = append(args, "--pool-size", strconv.Itoa(cfg.PoolSize))
	}
	if cfg.DataDir != "" {
		args = append(args, "--data-dir", cfg.DataDir)
	}
	cmd := exec.Command(binary, args...)
	// The DSN goes through the environment, never the command line (which
	// any local user can read).
	cmd.Env = append(append(os.Environ(), cfg.Env...), "ZOO_DSN="+cfg.DSN)
	if stderr != nil {
		cmd.Stderr = stderr
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start zoo: %w", err)
	}
	p := &Process{cmd: cmd, url: "http://" + addr, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()

	ctx, cancel := context.WithTimeout(ctx, processStartTimeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if resp, err := client.Get(p.url + "/health"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		select {
		case err := <-p.done:
			p.done <- err
			return nil, fmt.Errorf("zoo exited before serving: %v", err)
		case <-ctx.Done():
			p.Close(context.Background())
			return nil, fmt.Errorf("zoo did not answer: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// URL is the process's base URL.
func (p *Process) URL() string { return p.url }

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Close stops the process (SIGTERM, then SIGKILL when ctx ends) and waits.
func (p *Process) Close(ctx context.Context) error {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.Exited() {
			return fmt.Errorf("zoo exited: %w", err)
		}
		return nil
	case <-ctx.Done():
		p.cmd.Process.Kill()
		err := <-p.done
		p.done <- err
		return fmt.Errorf("zoo killed: %w", ctx.Err())
	}
}
