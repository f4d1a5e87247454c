package proc

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// MaxTree bounds the processes of one tree: a pre-fork server runs a master
// and one worker per core (nginx, gunicorn, php-fpm, Apache's prefork keep
// a few dozen); past 64 the probe's once-a-second reads would cost more
// than the evidence is worth.
const MaxTree = 64

// maxTaskDirs bounds the threads whose children are listed per process: a
// process forks from a handful of threads, and a server with thousands of
// threads must not cost thousands of reads a second.
const maxTaskDirs = 1024

// Tree returns pid and its descendants (children, grandchildren, …), pid
// first, breadth first, at most MaxTree processes. It reads
// /proc/PID/task/*/children and falls back to the parent of every process
// (/proc/*/stat) on kernels without it. An error means pid itself cannot be
// read.
func Tree(procRoot string, pid int) ([]int, error) {
	if procRoot == "" {
		procRoot = "/proc"
	}
	if _, err := os.Stat(filepath.Join(procRoot, strconv.Itoa(pid))); err != nil {
		return nil, fmt.Errorf("process %d: %w", pid, err)
	}
	out := []int{pid}
	seen := map[int]bool{pid: true}
	var byParent map[int][]int // the fallback, built once when needed
	for i := 0; i < len(out) && len(out) < MaxTree; i++ {
		kids, err := childrenOf(procRoot, out[i])
		if errors.Is(err, fs.ErrNotExist) && i == 0 {
			// No task/*/children (CONFIG_PROC_CHILDREN off): read the
			// parents of every process once.
			byParent = parents(procRoot)
		}
		if byParent != nil {
			kids = byParent[out[i]]
		}
		for _, k := range kids {
			if !seen[k] && len(out) < MaxTree {
				seen[k] = true
				out = append(out, k)
			}
		}
	}
	return out, nil
}

// childrenOf lists pid's children from each of its threads' children file.
func childrenOf(procRoot string, pid int) ([]int, error) {
	dir := filepath.Join(procRoot, strconv.Itoa(pid), "task")
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	tasks, err := f.Readdirnames(maxTaskDirs)
	f.Close()
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	var out []int
	found := false
	for _, tid := range tasks {
		b, err := readSmall(filepath.Join(dir, tid, "children"))
		if err != nil {
			continue
		}
		found = true
		for _, w := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(w); err == nil && n > 0 {
				out = append(out, n)
			}
		}
	}
	if !found && len(tasks) > 0 {
		return nil, fs.ErrNotExist
	}
	return out, nil
}

// parents maps every readable process to its parent's children.
func parents(procRoot string) map[int][]int {
	out := map[int][]int{}
	pids, _ := PIDs(procRoot)
	for _, pid := range pids {
		if ppid, ok := parentOf(procRoot, pid); ok {
			out[ppid] = append(out[ppid], pid)
		}
	}
	return out
}

// PIDs lists the processes under procRoot ("/proc" when empty), in
// increasing order.
func PIDs(procRoot string) ([]int, error) {
	if procRoot == "" {
		procRoot = "/proc"
	}
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, fmt.Errorf("scan processes: %w", err)
	}
	var out []int
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil && pid > 0 {
			out = append(out, pid)
		}
	}
	sort.Ints(out)
	return out, nil
}

// parentOf reads the parent from /proc/PID/stat: "pid (comm) state ppid …",
// where comm may hold spaces and parentheses.
func parentOf(procRoot string, pid int) (int, bool) {
	b, err := readSmall(filepath.Join(procRoot, strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0, false
	}
	ppid, err := strconv.Atoi(f[1])
	return ppid, err == nil
}
