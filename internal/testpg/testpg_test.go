package testpg

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/sys/unix"

	"github.com/chokepoint/chokepoint/internal/lowport"
)

// childEnv selects a child mode of this test binary (see TestMain).
const childEnv = "CHOKEPOINT_TESTPG_CHILD"

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "":
		os.Exit(Main(m))
	case "orphan":
		os.Exit(childOrphan())
	case "lifecycle":
		os.Exit(childLifecycle())
	default:
		fmt.Fprintln(os.Stderr, "unknown child mode")
		os.Exit(2)
	}
}

// childOrphan starts a cluster, says where it is, and waits to be killed.
func childOrphan() int {
	c, err := Start(context.Background(), Options{})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	fmt.Printf("%d %s\n", c.PID(), c.Dir())
	select {} // the parent kills us
}

// childLifecycle runs start, create, use, drop and stop, and reports the
// server's OS user.
func childLifecycle() int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := Start(ctx, Options{})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	uid := procUID(c.PID())
	dsn, err := c.CreateDatabase(ctx, "child")
	if err == nil {
		err = exec1(ctx, dsn, "CREATE TABLE t AS SELECT 1 AS x")
	}
	if err == nil {
		err = c.DropDatabase(ctx, "child")
	}
	if serr := c.Stop(ctx); err == nil {
		err = serr
	}
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	if _, err := os.Stat(c.Dir()); !errors.Is(err, os.ErrNotExist) {
		fmt.Println("error: directory left behind", c.Dir())
		return 1
	}
	fmt.Printf("ok uid=%d server_uid=%d\n", os.Getuid(), uid)
	return 0
}

func exec1(ctx context.Context, dsn, sql string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

// procUID is the real uid of a process, or -1.
func procUID(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for line := range strings.Lines(string(b)) {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "Uid:" {
			uid, _ := strconv.Atoi(f[1])
			return uid
		}
	}
	return -1
}

func needBinaries(t *testing.T) {
	t.Helper()
	if err := Available(); err != nil {
		skipOrFail(t, err)
	}
}

func TestStartOptions(t *testing.T) {
	needBinaries(t)
	for _, tc := range []struct {
		name     string
		opts     Options
		show     map[string]string // SHOW name -> value
		password string
	}{
		{
			name: "defaults",
			show: map[string]string{"max_connections": "100", "fsync": "off", "track_io_timing": "on",
				"shared_preload_libraries": "pg_stat_statements", "pg_stat_statements.track": "all",
				"listen_addresses": "127.0.0.1"},
		},
		{
			name: "settings and connections",
			opts: Options{MaxConnections: 20, Settings: map[string]string{"work_mem": "8MB", "application_name": "it's"}},
			show: map[string]string{"max_connections": "20", "work_mem": "8MB", "application_name": "it's"},
		},
		{
			name:     "password",
			opts:     Options{Password: "pw with 'quote' & @"},
			show:     map[string]string{"password_encryption": "scram-sha-256"},
			password: "pw with 'quote' & @",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			start := time.Now()
			c, err := Start(ctx, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("started in %s on port %d", time.Since(start), c.Port())
			defer c.Stop(ctx)
			if c.Port() < lowport.Min || c.Port() > lowport.Max {
				t.Errorf("port %d outside [%d, %d]", c.Port(), lowport.Min, lowport.Max)
			}
			if os.Geteuid() == 0 {
				if uid := procUID(c.PID()); uid == 0 || uid < 0 {
					t.Errorf("postmaster runs as uid %d, want an unprivileged user", uid)
				}
			}
			dsn := c.DSN("postgres")
			if tc.password != "" {
				if !strings.Contains(dsn, ":"+urlEscape(tc.password)+"@") {
					t.Errorf("DSN %q lacks the password", dsn)
				}
				wrong := strings.Replace(dsn, urlEscape(tc.password), "wrong", 1)
				if err := exec1(ctx, wrong, "SELECT 1"); err == nil {
					t.Error("a wrong password was accepted over TCP")
				}
			}
			conn, err := pgx.Connect(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			for name, want := range tc.show {
				var got string
				if err := conn.QueryRow(ctx, "SHOW "+name).Scan(&got); err != nil {
					t.Fatalf("SHOW %s: %v", name, err)
				}
				if got != want {
					t.Errorf("%s = %q, want %q", name, got, want)
				}
			}
			var n int
			if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_stat_statements").Scan(&n); err != nil {
				t.Errorf("pg_stat_statements not usable: %v", err)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  Options
		field string // "" = valid
	}{
		{"zero", Options{}, ""},
		{"port", Options{Port: 70000}, "Port"},
		{"connections", Options{MaxConnections: -1}, "MaxConnections"},
		{"setting name", Options{Settings: map[string]string{"a b": "1"}}, "Settings"},
		{"setting value", Options{Settings: map[string]string{"work_mem": "1\nfsync=on"}}, "Settings"},
		{"password", Options{Password: "a\nb"}, "Password"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.opts.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("error %v, want one naming %s", err, tc.field)
			}
		})
	}
}

func TestNewDB(t *testing.T) {
	var dsn, name string
	t.Run("fresh database", func(t *testing.T) {
		dsn = NewDB(t)
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&name); err != nil {
			t.Fatal(err)
		}
		var tables int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_stat_user_tables").Scan(&tables); err != nil {
			t.Fatal(err)
		}
		if tables != 0 {
			t.Errorf("fresh database has %d tables", tables)
		}
		var ext int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'").Scan(&ext); err != nil || ext != 1 {
			t.Errorf("pg_stat_statements not in the new database (%d, %v)", ext, err)
		}
		if _, err := conn.Exec(ctx, "CREATE TABLE t (x int)"); err != nil {
			t.Fatal(err)
		}
	})
	if name == "" {
		t.Fatal("subtest did not run")
	}
	// The subtest's cleanup has run: the database must be gone, even
	// though a connection to it was opened.
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, Shared(t).DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("database %s still exists after its test ended", name)
	}
	if err := exec1(ctx, dsn, "SELECT 1"); err == nil {
		t.Error("connected to a dropped database")
	}
}

func TestNewDBDistinct(t *testing.T) {
	a, b := NewDB(t), NewDB(t)
	if a == b {
		t.Fatalf("two NewDB calls returned the same database %s", a)
	}
}

func TestStopRemovesEverything(t *testing.T) {
	needBinaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := Start(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	pid, dir, port := c.PID(), c.Dir(), c.Port()
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(ctx); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("directory %s left behind (%v)", dir, err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("postmaster %d still exists (%v)", pid, err)
	}
	d := pgconnDialer(port)
	if err := d(ctx); err == nil {
		t.Errorf("port %d still accepts connections", port)
	}
}

func pgconnDialer(port int) func(context.Context) error {
	return func(ctx context.Context) error {
		conn, err := pgconn.Connect(ctx, fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable&connect_timeout=2", port))
		if err == nil {
			conn.Close(ctx)
		}
		return err
	}
}

// TestOrphanDiesWithParent kills a process that owns a cluster and checks
// that the postmaster exits and a later sweep removes its directory.
func TestOrphanDiesWithParent(t *testing.T) {
	needBinaries(t)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), childEnv+"=orphan")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child said %q: %v", line, err)
	}
	var pid int
	var dir string
	if _, err := fmt.Sscanf(line, "%d %s", &pid, &dir); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child said %q", line)
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("pidfd_open(%d): %v", pid, err)
	}
	defer unix.Close(pidfd)

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, out)
	_ = cmd.Wait()

	// The pidfd becomes readable when the postmaster exits.
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, int((30 * time.Second).Milliseconds()))
	if err != nil || n != 1 {
		syscall.Kill(pid, syscall.SIGKILL)
		t.Fatalf("postmaster %d outlived its parent (poll %d, %v)", pid, n, err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("orphaned directory %s: %v", dir, err)
	}
	sweepStale(filepath.Dir(dir))
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		os.RemoveAll(dir)
		t.Errorf("sweep left the orphaned directory %s (%v)", dir, err)
	}
}

// TestSweepSparesLiveOwners checks that a directory whose owner runs (this
// test) survives a sweep, and one without an owner stamp is left alone.
func TestSweepSparesLiveOwners(t *testing.T) {
	tmp := t.TempDir()
	live := filepath.Join(tmp, dirPrefix+"live")
	noStamp := filepath.Join(tmp, dirPrefix+"nostamp")
	dead := filepath.Join(tmp, dirPrefix+"dead")
	other := filepath.Join(tmp, "unrelated")
	for _, d := range []string{live, noStamp, dead, other} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(live, ownerFile), []byte(ownerStamp(os.Getpid())), 0o644)
	// A real pid with a start time that does not match: pid reuse.
	os.WriteFile(filepath.Join(dead, ownerFile), []byte(fmt.Sprintf("%d 1\n", os.Getpid())), 0o644)
	os.WriteFile(filepath.Join(other, ownerFile), []byte("0 0\n"), 0o644)
	sweepStale(tmp)
	for _, tc := range []struct {
		dir  string
		kept bool
	}{{live, true}, {noStamp, true}, {dead, false}, {other, true}} {
		_, err := os.Stat(tc.dir)
		if kept := err == nil; kept != tc.kept {
			t.Errorf("%s: kept=%v, want %v", filepath.Base(tc.dir), kept, tc.kept)
		}
	}
}

// TestNonRoot runs the whole life cycle as an unprivileged user. As root it
// runs a copy of this test binary as nobody; as anyone else the other tests
// already take that path.
func TestNonRoot(t *testing.T) {
	needBinaries(t)
	if os.Geteuid() != 0 {
		t.Skip("not root: every other test here already runs the non-root path")
	}
	dir, err := os.MkdirTemp("", "testpg-nonroot-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "testpg.test")
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	const nobody = 65534
	cmd := exec.Command(bin)
	cmd.Dir = dir
	cmd.Env = []string{childEnv + "=lifecycle", "PATH=" + os.Getenv("PATH"), "TMPDIR=/tmp", "HOME=/tmp"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child as nobody: %v: %s", err, out)
	}
	want := fmt.Sprintf("ok uid=%d server_uid=%d", nobody, nobody)
	if !strings.Contains(string(out), want) {
		t.Errorf("child said %q, want %q", out, want)
	}
}

func TestDBName(t *testing.T) {
	for _, tc := range []struct {
		test string
		n    int
		want string
	}{
		{"TestX", 1, "t1_testx"},
		{"TestX/sub case-1", 2, "t2_testx_sub_case_1"},
		{strings.Repeat("A", 100), 3, "t3_" + strings.Repeat("a", 40)},
		{"Ünïcode/ü", 4, "t4__n_code__"},
	} {
		t.Run(tc.test, func(t *testing.T) {
			got := dbName(tc.test, tc.n)
			if got != tc.want {
				t.Errorf("dbName = %q, want %q", got, tc.want)
			}
			if len(got) > 63 {
				t.Errorf("%q longer than 63 bytes", got)
			}
		})
	}
}

func TestFindBin(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // no initdb on PATH
	root := t.TempDir()
	mk := func(version string, tools ...string) {
		d := filepath.Join(root, version, "bin")
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, tool := range tools {
			if err := os.WriteFile(filepath.Join(d, tool), []byte("#!/bin/sh\n"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	all := []string{"initdb", "pg_ctl", "postgres"}
	mk("9.6", all...)
	mk("10", all...)
	mk("16", "initdb") // incomplete: skipped
	glob := filepath.Join(root, "*", "bin")
	got, err := findBinIn(glob)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(root, "10", "bin"); got != want {
		t.Errorf("findBinIn = %s, want the newest complete version %s", got, want)
	}

	_, err = findBinIn(filepath.Join(t.TempDir(), "*", "bin"))
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "apt-get install postgresql postgresql-contrib") {
		t.Errorf("error %v does not say how to install", err)
	}
}
