package evidence

// Roles of a proc record.
const (
	RoleTarget  = "target"  // the service under test
	RoleLoadgen = "loadgen" // chokepoint's own process
	RoleMachine = "machine" // the whole machine
	// RoleProxy is the process listening on the target's port when it
	// forwards the requests to a backend on this machine (a reverse proxy);
	// the backend is then the target.
	RoleProxy = "proxy"
)

// ProcRecord is one sample (about once a second) in ProcStream (proc.jsonl):
// either one watched process (Role target, proxy or loadgen, Process set) or
// the machine (Role machine, Machine set). Rates are over the interval since the
// previous sample of the same role and PID.
type ProcRecord struct {
	T          int64  `json:"t"`
	Role       string `json:"role"`
	PID        int    `json:"pid,omitempty"`
	IntervalMS int64  `json:"interval_ms"`
	// Port is the TCP port the process listens on for this role when
	// discovery found it there (the target's port for a proxy, the
	// upstream's for the target behind it); 0 when not known.
	Port    int            `json:"port,omitempty"`
	Process *ProcessSample `json:"process,omitempty"`
	Machine *MachineSample `json:"machine,omitempty"`
}

// ProcessSample is what /proc/PID (and its cgroup) says about one process,
// or, when Processes > 1, about a process tree (the process and its
// descendants, e.g. a pre-fork server's master and workers): counters and
// gauges summed over the tree's members, rates over the members present at
// both ends of the interval.
type ProcessSample struct {
	Name string `json:"name"` // comm of the root process

	// Processes is how many processes were summed (absent in records of
	// one process written before trees were summed); PIDs lists them, the
	// root first.
	Processes int   `json:"processes,omitempty"`
	PIDs      []int `json:"pids,omitempty"`

	// CPU used, in cores (1.0 = one CPU busy for the whole interval).
	CPUCores    float64 `json:"cpu_cores"`
	UserCores   float64 `json:"user_cores"`
	SystemCores float64 `json:"system_cores"`

	Threads  int   `json:"threads"`
	RSSBytes int64 `json:"rss_bytes"`
	FDs      int   `json:"fds"`
	FDLimit  int64 `json:"fd_limit"` // soft RLIMIT_NOFILE; 0 when unlimited or unknown
	// FDMaxShare is the highest open/limit ratio of one member: a tree's
	// summed FDs can hide one worker at its limit. Absent when unknown.
	FDMaxShare float64 `json:"fd_max_share,omitempty"`
	// Sockets is how many of the open descriptors are sockets.
	Sockets int `json:"sockets,omitempty"`

	// I/O per second: storage bytes (read_bytes/write_bytes) and all bytes
	// through read/write syscalls, sockets included (rchar/wchar). Absent
	// when /proc/PID/io is not readable.
	ReadBytesPerSec  *float64 `json:"read_bytes_per_sec,omitempty"`
	WriteBytesPerSec *float64 `json:"write_bytes_per_sec,omitempty"`
	RCharPerSec      *float64 `json:"rchar_per_sec,omitempty"`
	WCharPerSec      *float64 `json:"wchar_per_sec,omitempty"`

	VoluntaryCtxSwitchesPerSec   float64 `json:"voluntary_ctx_switches_per_sec"`
	InvoluntaryCtxSwitchesPerSec float64 `json:"involuntary_ctx_switches_per_sec"`

	// Run-queue delay from /proc/PID/task/*/schedstat: seconds the
	// process's threads spent runnable but waiting for a CPU, per second
	// (can exceed 1 with many threads), and the mean wait per time slice.
	RunQueueWaitPerSec     *float64 `json:"runqueue_wait_per_sec,omitempty"`
	RunQueueWaitMSPerSlice *float64 `json:"runqueue_wait_ms_per_slice,omitempty"`

	Cgroup *CgroupCPU `json:"cgroup,omitempty"` // absent when no CPU controller was found
}

// CgroupCPU is the process's cgroup CPU limit and throttling (cgroup v2
// cpu.max and cpu.stat, or v1 cpu.cfs_quota_us/cfs_period_us and cpu.stat).
type CgroupCPU struct {
	Version int    `json:"version"` // 1 or 2
	Path    string `json:"path"`    // the cgroup, as /proc/PID/cgroup names it
	// QuotaCores is quota/period: the CPUs the cgroup may use; absent
	// when unlimited.
	QuotaCores *float64 `json:"quota_cores,omitempty"`
	// Per-interval deltas of cpu.stat.
	Periods          uint64  `json:"periods"`
	ThrottledPeriods uint64  `json:"throttled_periods"`
	ThrottledSeconds float64 `json:"throttled_seconds"`
}

// MachineSample is what /proc says about the whole machine.
type MachineSample struct {
	Cores int `json:"cores"`
	// CPU shares over the interval, 0..1 of all cores: busy (everything
	// but idle and iowait), steal, iowait; and busy per core.
	CPUBusy        float64   `json:"cpu_busy"`
	CPUSteal       float64   `json:"cpu_steal"`
	CPUIOWait      float64   `json:"cpu_iowait"`
	CPUBusyPerCore []float64 `json:"cpu_busy_per_core"`

	Load1  float64 `json:"load1"`
	Load5  float64 `json:"load5"`
	Load15 float64 `json:"load15"`

	// Pressure stall information, absent when the kernel has no PSI.
	PSI *PSI `json:"psi,omitempty"`

	// TCP (from /proc/net/netstat, /proc/net/snmp, /proc/net/sockstat of
	// the target's network namespace), deltas per second.
	TCPListenOverflowsPerSec float64 `json:"tcp_listen_overflows_per_sec"`
	TCPListenDropsPerSec     float64 `json:"tcp_listen_drops_per_sec"`
	TCPRetransSegsPerSec     float64 `json:"tcp_retrans_segs_per_sec"`
	TCPOutSegsPerSec         float64 `json:"tcp_out_segs_per_sec"`
	TCPCurrEstab             int64   `json:"tcp_curr_estab"`
	TCPInUse                 int     `json:"tcp_inuse"`     // sockets in use (sockstat TCP inuse)
	TCPTimeWait              int     `json:"tcp_time_wait"` // sockstat TCP tw
	TCPOrphan                int     `json:"tcp_orphan"`    // sockstat TCP orphan
	SocketsUsed              int     `json:"sockets_used"`  // sockstat "sockets: used"
}

// PSI holds /proc/pressure/{cpu,memory,io}.
type PSI struct {
	CPU    PSIResource `json:"cpu"`
	Memory PSIResource `json:"memory"`
	IO     PSIResource `json:"io"`
}

// PSIResource is one resource's pressure: the kernel's 10 s averages (in
// percent) and, over the interval, the share of time some / all tasks
// stalled (0..1, from the total counters).
type PSIResource struct {
	SomeAvg10 float64 `json:"some_avg10"`
	FullAvg10 float64 `json:"full_avg10"`
	Some      float64 `json:"some"`
	Full      float64 `json:"full"`
}
