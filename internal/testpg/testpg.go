// Package testpg starts throwaway PostgreSQL clusters from the installed
// server binaries, for tests and for `chokepoint demo`.
//
// A cluster lives in a private temporary directory (data, unix socket, log),
// listens on 127.0.0.1 at a port below the ephemeral range, trusts loopback
// connections, and is tuned for speed rather than durability (fsync off). It
// preloads pg_stat_statements and creates the extension in template1, so every
// database created afterwards has the view. Starting one takes about a second.
//
// Orphans: the postmaster is started directly (not through pg_ctl) with a
// parent-death signal (SIGQUIT, PostgreSQL's immediate shutdown), from an OS
// thread that stays alive until the postmaster exits, so a test binary that is
// killed takes its cluster down with it. The directory it leaves behind is
// removed by the next Start on the machine: each directory records the pid
// and start time of the process that owns it, and Start sweeps directories
// whose owner is gone.
package testpg

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chokepoint/chokepoint/internal/lowport"
)

// Superuser is the role that owns every cluster started here.
const Superuser = "postgres"

// DefaultMaxConnections is max_connections when Options leaves it zero:
// PostgreSQL's own default.
const DefaultMaxConnections = 100

// installHint says how to get the binaries on Debian/Ubuntu (the distribution
// the project's machines run); contrib carries pg_stat_statements.
const installHint = "install PostgreSQL's server binaries: apt-get install postgresql postgresql-contrib"

// Timing bounds. Start normally takes under a second here; the bounds are
// generous so that a loaded 2-core machine does not fail tests spuriously.
const (
	readyTimeout   = 30 * time.Second       // postmaster start to accepting connections
	readyPoll      = 10 * time.Millisecond  // between readiness probes
	shutdownGrace  = 5 * time.Second        // after SIGQUIT before SIGKILL
	bindRetries    = 5                      // fresh ports tried when one is taken meanwhile
	maxSocketPath  = 107                    // sun_path is 108 bytes on Linux, NUL included
	dirPrefix      = "chokepoint-pg-"       // temporary directory name prefix, for the sweep
	ownerFile      = "owner"                // pid and start time of the owning process
	logFile        = "postgres.log"         // the postmaster's stderr
	logTailBytes   = 2048                   // how much of the log an error quotes
	adminTimeout   = 30 * time.Second       // one administrative statement
	connectTimeout = 500 * time.Millisecond // one readiness connection attempt
)

// Options configure a cluster. The zero value is a good default.
type Options struct {
	// Port is the TCP port on 127.0.0.1; 0 picks a free one below 32768
	// (internal/lowport), so that load tests never collide with client ports.
	Port int
	// Settings are extra postgresql.conf parameters; they override the
	// defaults set here (including the speed settings).
	Settings map[string]string
	// MaxConnections is max_connections; 0 means DefaultMaxConnections.
	MaxConnections int
	// Password, when set, is the superuser's password and TCP connections
	// must present it (scram-sha-256); DSN then includes it. The unix socket
	// stays trusted. Empty: TCP connections from loopback are trusted.
	Password string
}

var settingName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.]*$`)

// Validate reports an option that cannot work; errors name the field.
func (o Options) Validate() error {
	if o.Port < 0 || o.Port > 65535 {
		return fmt.Errorf("options: Port %d out of range", o.Port)
	}
	if o.MaxConnections < 0 {
		return fmt.Errorf("options: MaxConnections %d is negative", o.MaxConnections)
	}
	for k, v := range o.Settings {
		if !settingName.MatchString(k) {
			return fmt.Errorf("options: Settings: bad parameter name %q", k)
		}
		if strings.ContainsAny(v, "\n\r\x00") {
			return fmt.Errorf("options: Settings: value of %s has a line break or NUL", k)
		}
	}
	if strings.ContainsAny(o.Password, "\n\r\x00") {
		return errors.New("options: Password has a line break or NUL")
	}
	return nil
}

// Cluster is a running private PostgreSQL server.
type Cluster struct {
	bin      string // directory of initdb, postgres
	base     string // private directory: data/, sock/, owner, postgres.log
	port     int
	password string

	done     chan struct{} // closed when the postmaster has exited
	waitErr  error         // its exit status, valid once done is closed
	proc     *os.Process
	stopOnce sync.Once
	stopErr  error
}

// ErrUnavailable is wrapped by the errors of Available and Start when the
// server binaries cannot be found.
var ErrUnavailable = errors.New("postgresql server binaries not found")

// Available returns nil when initdb and postgres are installed (on PATH, or
// under /usr/lib/postgresql/*/bin, newest version first), else an error
// wrapping ErrUnavailable that says how to install them.
func Available() error {
	_, err := findBin()
	return err
}

// binGlob is where Debian and Ubuntu install each PostgreSQL version.
const binGlob = "/usr/lib/postgresql/*/bin"

// findBin returns the directory holding initdb, pg_ctl and postgres.
func findBin() (string, error) { return findBinIn(binGlob) }

// findBinIn looks on PATH first, then in the directories matching glob,
// newest version first.
func findBinIn(glob string) (string, error) {
	var dirs []string
	if p, err := exec.LookPath("initdb"); err == nil {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			p = r
		}
		dirs = append(dirs, filepath.Dir(p))
	}
	matches, _ := filepath.Glob(glob)
	sort.SliceStable(matches, func(i, j int) bool { return versionOf(matches[i]) > versionOf(matches[j]) })
	dirs = append(dirs, matches...)
	for _, d := range dirs {
		if isExec(filepath.Join(d, "initdb")) && isExec(filepath.Join(d, "postgres")) && isExec(filepath.Join(d, "pg_ctl")) {
			return d, nil
		}
	}
	return "", fmt.Errorf("%w (looked on PATH and in %s): %s", ErrUnavailable, glob, installHint)
}

// versionOf reads the major version from /usr/lib/postgresql/<v>/bin.
func versionOf(binDir string) float64 {
	v, err := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	if err != nil {
		return -1
	}
	return v
}

func isExec(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// account is the OS user the server runs as.
type account struct {
	name     string
	uid, gid uint32
	switched bool // true when it differs from the current user (we are root)
}

// serverAccount picks who runs the server: the current user, or when that
// is root (initdb refuses root) the postgres system user, else nobody.
func serverAccount() (account, error) {
	if os.Geteuid() != 0 {
		u, err := user.Current()
		name := "current user"
		if err == nil {
			name = u.Username
		}
		return account{name: name, uid: uint32(os.Geteuid()), gid: uint32(os.Getegid())}, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil || uid == 0 {
			continue
		}
		return account{name: name, uid: uint32(uid), gid: uint32(gid), switched: true}, nil
	}
	return account{}, errors.New("running as root and neither the postgres nor the nobody user exists: initdb refuses to run as root")
}

func (a account) attr() *syscall.SysProcAttr {
	attr := &syscall.SysProcAttr{Setpgid: true}
	if a.switched {
		attr.Credential = &syscall.Credential{Uid: a.uid, Gid: a.gid, NoSetGroups: true}
	}
	return attr
}

// Start creates and starts a private cluster. It takes about a second. The
// caller must Stop it; if the calling process dies first, the postmaster
// receives SIGQUIT and its directory is removed by a later Start.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	bin, err := findBin()
	if err != nil {
		return nil, err
	}
	acct, err := serverAccount()
	if err != nil {
		return nil, fmt.Errorf("start postgresql: %w", err)
	}
	sweepStale(os.TempDir())

	base, err := makeBase(acct)
	if err != nil {
		return nil, fmt.Errorf("start postgresql: %w", err)
	}
	c := &Cluster{bin: bin, base: base, password: opts.Password, done: make(chan struct{})}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(base)
		}
	}()

	if err := c.initdb(ctx, acct); err != nil {
		return nil, fmt.Errorf("start postgresql: %w", err)
	}
	for attempt := 0; ; attempt++ {
		port := opts.Port
		if port == 0 {
			addr, err := lowport.Addr()
			if err != nil {
				return nil, fmt.Errorf("start postgresql: %w", err)
			}
			_, p, _ := net.SplitHostPort(addr)
			port, _ = strconv.Atoi(p)
		}
		if err := c.writeConf(opts, port); err != nil {
			return nil, fmt.Errorf("start postgresql: %w", err)
		}
		err := c.startServer(ctx, acct, port)
		if err == nil {
			break
		}
		if !errors.Is(err, errPortTaken) || opts.Port != 0 || attempt+1 >= bindRetries {
			return nil, fmt.Errorf("start postgresql: %w", err)
		}
	}
	if err := c.prepareTemplates(ctx); err != nil {
		c.kill()
		return nil, fmt.Errorf("start postgresql: %w", err)
	}
	ok = true
	return c, nil
}

// makeBase creates the private directory, owned by the server's account,
// and records who owns it for the orphan sweep.
func makeBase(acct account) (string, error) {
	tmp := os.TempDir()
	// The socket path must fit in sun_path; fall back to /tmp for a long TMPDIR.
	if len(tmp)+len(dirPrefix)+len("/1234567890/sock/.s.PGSQL.65535") > maxSocketPath {
		tmp = "/tmp"
	}
	base, err := os.MkdirTemp(tmp, dirPrefix)
	if err != nil {
		return "", fmt.Errorf("make directory: %w", err)
	}
	// Written whole and renamed into place, so that a concurrent sweep never
	// reads half a stamp (and takes a live directory for a stale one).
	tmpOwner := filepath.Join(base, ownerFile+".tmp")
	if err := os.WriteFile(tmpOwner, []byte(ownerStamp(os.Getpid())), 0o644); err != nil {
		os.RemoveAll(base)
		return "", fmt.Errorf("make directory: %w", err)
	}
	if err := os.Rename(tmpOwner, filepath.Join(base, ownerFile)); err != nil {
		os.RemoveAll(base)
		return "", fmt.Errorf("make directory: %w", err)
	}
	for _, d := range []string{"sock"} {
		if err := os.Mkdir(filepath.Join(base, d), 0o700); err != nil {
			os.RemoveAll(base)
			return "", fmt.Errorf("make directory: %w", err)
		}
	}
	if acct.switched {
		for _, p := range []string{base, filepath.Join(base, "sock")} {
			if err := os.Chown(p, int(acct.uid), int(acct.gid)); err != nil {
				os.RemoveAll(base)
				return "", fmt.Errorf("make directory: %w", err)
			}
		}
	}
	return base, nil
}

func (c *Cluster) dataDir() string { return filepath.Join(c.base, "data") }
func (c *Cluster) sockDir() string { return filepath.Join(c.base, "sock") }

// initdb creates the data directory as the server's account.
func (c *Cluster) initdb(ctx context.Context, acct account) error {
	args := []string{"-D", c.dataDir(), "-U", Superuser, "-E", "UTF8", "--locale=C", "--no-sync"}
	if c.password != "" {
		pw := filepath.Join(c.base, "pwfile")
		if err := os.WriteFile(pw, []byte(c.password+"\n"), 0o600); err != nil {
			return fmt.Errorf("initdb: %w", err)
		}
		if acct.switched {
			if err := os.Chown(pw, int(acct.uid), int(acct.gid)); err != nil {
				return fmt.Errorf("initdb: %w", err)
			}
		}
		defer os.Remove(pw)
		args = append(args, "--pwfile="+pw, "--auth-local=trust", "--auth-host=scram-sha-256")
	} else {
		args = append(args, "--auth=trust")
	}
	cmd := exec.CommandContext(ctx, filepath.Join(c.bin, "initdb"), args...)
	cmd.Dir = c.base
	cmd.Env = serverEnv()
	cmd.SysProcAttr = acct.attr()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("initdb as %s: %w: %s", acct.name, err, tail(out.Bytes()))
	}
	return nil
}

// serverEnv is a small, predictable environment for the server processes.
func serverEnv() []string {
	env := []string{"LC_ALL=C", "LANG=C", "PATH=/usr/bin:/bin"}
	if tz, ok := os.LookupEnv("TZ"); ok {
		env = append(env, "TZ="+tz)
	}
	return env
}

// baseSettings are the postgresql.conf parameters every cluster gets.
func baseSettings(opts Options, port int, sockDir string) map[string]string {
	maxConn := opts.MaxConnections
	if maxConn == 0 {
		maxConn = DefaultMaxConnections
	}
	s := map[string]string{
		"listen_addresses":         "127.0.0.1",
		"port":                     strconv.Itoa(port),
		"unix_socket_directories":  sockDir,
		"max_connections":          strconv.Itoa(maxConn),
		"shared_preload_libraries": "pg_stat_statements",
		"pg_stat_statements.track": "all",
		"track_io_timing":          "on",
		"compute_query_id":         "on",
		// Speed over durability: the cluster is thrown away.
		"fsync":              "off",
		"synchronous_commit": "off",
		"full_page_writes":   "off",
		"logging_collector":  "off",
		"log_min_messages":   "warning",
	}
	maps.Copy(s, opts.Settings)
	return s
}

// writeConf writes postgresql.auto.conf-style overrides into an include file
// that postgresql.conf pulls in last.
func (c *Cluster) writeConf(opts Options, port int) error {
	settings := baseSettings(opts, port, c.sockDir())
	var b strings.Builder
	b.WriteString("# written by chokepoint internal/testpg\n")
	for _, k := range slices.Sorted(maps.Keys(settings)) {
		fmt.Fprintf(&b, "%s = '%s'\n", k, strings.ReplaceAll(settings[k], "'", "''"))
	}
	inc := filepath.Join(c.dataDir(), "chokepoint.conf")
	if err := os.WriteFile(inc, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("write settings: %w", err)
	}
	conf := filepath.Join(c.dataDir(), "postgresql.conf")
	cur, err := os.ReadFile(conf)
	if err != nil {
		return fmt.Errorf("write settings: %w", err)
	}
	const line = "include 'chokepoint.conf'\n"
	if !bytes.Contains(cur, []byte(line)) {
		f, err := os.OpenFile(conf, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return fmt.Errorf("write settings: %w", err)
		}
		_, err = f.WriteString("\n" + line)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("write settings: %w", err)
		}
	}
	c.port = port
	return nil
}

// errPortTaken means the postmaster could not bind its port.
var errPortTaken = errors.New("port already in use")

// startServer runs the postmaster and waits until it accepts connections.
func (c *Cluster) startServer(ctx context.Context, acct account, port int) error {
	logPath := filepath.Join(c.base, logFile)
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("postgres log: %w", err)
	}
	defer logf.Close() // the child holds its own descriptor

	cmd := exec.Command(filepath.Join(c.bin, "postgres"), "-D", c.dataDir())
	cmd.Dir = c.base
	cmd.Env = serverEnv()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = acct.attr()
	// SIGQUIT is PostgreSQL's immediate shutdown: children exit at once and
	// shared memory is released. The kernel sends it when the thread that
	// forked the postmaster dies, so that thread must live as long as the
	// postmaster: a goroutine locked to it waits for the exit.
	cmd.SysProcAttr.Pdeathsig = syscall.SIGQUIT

	done := make(chan struct{})
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Never unlocked: the thread exits with this goroutine, after the
		// postmaster is gone.
		if err := cmd.Start(); err != nil {
			started <- err
			close(done)
			return
		}
		started <- nil
		c.waitErr = cmd.Wait()
		close(done)
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("run postgres: %w", err)
	}
	c.proc = cmd.Process
	c.done = done

	deadline := time.NewTimer(readyTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(readyPoll)
	defer tick.Stop()
	for {
		if c.ping(ctx) == nil {
			return nil
		}
		select {
		case <-done:
			log, _ := os.ReadFile(logPath)
			if bytes.Contains(log, []byte("could not bind")) || bytes.Contains(log, []byte("Address already in use")) {
				return fmt.Errorf("postgres on port %d: %w", port, errPortTaken)
			}
			return fmt.Errorf("postgres exited (%v): %s", c.waitErr, tail(log))
		case <-ctx.Done():
			c.kill()
			return fmt.Errorf("wait for postgres: %w", context.Cause(ctx))
		case <-deadline.C:
			c.kill()
			log, _ := os.ReadFile(logPath)
			return fmt.Errorf("postgres not ready after %s: %s", readyTimeout, tail(log))
		case <-tick.C:
		}
	}
}

// ping connects once over the unix socket.
func (c *Cluster) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.socketDSN("postgres"))
	if err != nil {
		return err
	}
	return conn.Close(ctx)
}

// socketDSN connects over the private unix socket, which is always trusted.
func (c *Cluster) socketDSN(db string) string {
	return fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", c.sockDir(), c.port, Superuser, quoteKV(db))
}

func quoteKV(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// admin runs statements in db as the superuser over the unix socket.
func (c *Cluster) admin(ctx context.Context, db string, stmts ...string) error {
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.socketDSN(db))
	if err != nil {
		return fmt.Errorf("connect to %s: %w", db, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return nil
}

// prepareTemplates creates pg_stat_statements where new databases come from.
func (c *Cluster) prepareTemplates(ctx context.Context) error {
	for _, db := range []string{"template1", "postgres"} {
		if err := c.admin(ctx, db, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"); err != nil {
			return fmt.Errorf("pg_stat_statements (is postgresql-contrib installed?): %w", err)
		}
	}
	return nil
}

// Port is the TCP port the cluster listens on at 127.0.0.1.
func (c *Cluster) Port() int { return c.port }

// Dir is the cluster's private directory (data/, sock/, postgres.log).
func (c *Cluster) Dir() string { return c.base }

// PID is the postmaster's process id.
func (c *Cluster) PID() int { return c.proc.Pid }

// DSN returns a URL connecting to database db over TCP as the superuser:
// postgres://postgres@127.0.0.1:PORT/db?sslmode=disable (with the password
// when Options.Password was set).
func (c *Cluster) DSN(db string) string {
	u := "postgres://" + Superuser
	if c.password != "" {
		u = "postgres://" + Superuser + ":" + urlEscape(c.password)
	}
	return fmt.Sprintf("%s@127.0.0.1:%d/%s?sslmode=disable", u, c.port, urlEscape(db))
}

func urlEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || strings.IndexByte("-._~", ch) >= 0 {
			b.WriteByte(ch)
		} else {
			fmt.Fprintf(&b, "%%%02X", ch)
		}
	}
	return b.String()
}

// CreateDatabase creates database name (from template1, so it has
// pg_stat_statements) and returns its DSN.
func (c *Cluster) CreateDatabase(ctx context.Context, name string) (string, error) {
	if name == "" {
		return "", errors.New("create database: empty name")
	}
	if err := c.admin(ctx, "postgres", "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("create database: %w", err)
	}
	return c.DSN(name), nil
}

// DropDatabase drops database name, disconnecting its sessions first. A
// database that does not exist is not an error.
func (c *Cluster) DropDatabase(ctx context.Context, name string) error {
	if err := c.admin(ctx, "postgres", "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database: %w", err)
	}
	return nil
}

// Stop shuts the server down (fast shutdown: sessions are disconnected) and
// removes its directory. When ctx ends first, the server is stopped
// immediately (SIGQUIT, then SIGKILL). Calling Stop again returns the first
// result.
func (c *Cluster) Stop(ctx context.Context) error {
	c.stopOnce.Do(func() {
		var errs []error
		if c.proc != nil {
			_ = c.proc.Signal(syscall.SIGINT) // fast shutdown
			select {
			case <-c.done:
			case <-ctx.Done():
				c.kill()
				errs = append(errs, fmt.Errorf("stop postgresql: %w", context.Cause(ctx)))
			}
		}
		if err := os.RemoveAll(c.base); err != nil {
			errs = append(errs, fmt.Errorf("stop postgresql: %w", err))
		}
		c.stopErr = errors.Join(errs...)
	})
	return c.stopErr
}

// kill stops the postmaster immediately and waits for it.
func (c *Cluster) kill() {
	if c.proc == nil {
		return
	}
	_ = c.proc.Signal(syscall.SIGQUIT)
	t := time.NewTimer(shutdownGrace)
	defer t.Stop()
	select {
	case <-c.done:
		return
	case <-t.C:
	}
	_ = syscall.Kill(-c.proc.Pid, syscall.SIGKILL) // its process group: children too
	<-c.done
}

// tail returns the last lines of a log, for error messages.
func tail(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) > logTailBytes {
		b = b[len(b)-logTailBytes:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return strings.ReplaceAll(string(b), "\n", " | ")
}

// ownerStamp identifies a process across pid reuse: "pid starttime".
func ownerStamp(pid int) string {
	return fmt.Sprintf("%d %d\n", pid, startTime(pid))
}

// startTime is the process's start time in clock ticks since boot
// (/proc/PID/stat field 22), or 0 when unknown.
func startTime(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may contain spaces; fields after ')' are plain.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state), so field 22 is f[19].
	if len(f) < 20 {
		return 0
	}
	v, _ := strconv.ParseUint(f[19], 10, 64)
	return v
}

// alive reports whether the process of an owner stamp still runs.
func alive(stamp string) bool {
	var pid int
	var st uint64
	if _, err := fmt.Sscanf(stamp, "%d %d", &pid, &st); err != nil || pid <= 0 {
		return false
	}
	now := startTime(pid)
	return now != 0 && now == st
}

// sweepStale removes cluster directories in tmp whose owning process is gone,
// first stopping a postmaster that still runs in one (it should not: the
// parent-death signal stops it).
func sweepStale(tmp string) {
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), dirPrefix) {
			continue
		}
		dir := filepath.Join(tmp, e.Name())
		stamp, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil || alive(string(stamp)) {
			continue // being created (no stamp yet), or still owned
		}
		if pid := postmasterPID(dir); pid > 0 && processUsesDir(pid, dir) {
			_ = syscall.Kill(pid, syscall.SIGQUIT)
			continue // removed by the next sweep, once it has exited
		}
		os.RemoveAll(dir)
	}
}

// postmasterPID reads the first line of data/postmaster.pid.
func postmasterPID(dir string) int {
	f, err := os.Open(filepath.Join(dir, "data", "postmaster.pid"))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(sc.Text()))
	return pid
}

// processUsesDir reports whether pid is a postgres whose command line names dir.
func processUsesDir(pid int, dir string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	return bytes.Contains(b, []byte(dir))
}
