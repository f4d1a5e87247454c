package proc

import (
	"sort"
	"time"

	"github.com/prometheus/procfs"

	"github.com/chokepoint/chokepoint/internal/evidence"
)

// machineWatch samples the machine.
type machineWatch struct {
	fs     procfs.FS
	netPID int // read TCP counters in this process's network namespace (0: ours)
	prev   *machineRaw
}

type machineRaw struct {
	t    time.Time
	stat procfs.Stat
	load *procfs.LoadAvg
	psi  map[string]procfs.PSIStats
	tcp  *tcpRaw
	sock *procfs.NetSockstat
}

type tcpRaw struct {
	overflows, drops, retrans, outSegs, currEstab float64
}

var psiResources = []string{"cpu", "memory", "io"}

func (m *machineWatch) read(now time.Time) (*machineRaw, []string, error) {
	st, err := m.fs.Stat()
	if err != nil {
		return nil, nil, err
	}
	r := &machineRaw{t: now, stat: st, psi: map[string]procfs.PSIStats{}}
	var notes []string
	if l, err := m.fs.LoadAvg(); err == nil {
		r.load = l
	}
	for _, res := range psiResources {
		if ps, err := m.fs.PSIStatsForResource(res); err == nil {
			r.psi[res] = ps
		}
	}
	if len(r.psi) < len(psiResources) {
		notes = append(notes, "pressure stall information unavailable (kernel without CONFIG_PSI or psi=0)")
	}
	netProc, err := m.fs.Self()
	if m.netPID > 0 {
		netProc, err = m.fs.Proc(m.netPID)
	}
	if err == nil {
		t := &tcpRaw{}
		ok := false
		if ns, err := netProc.Netstat(); err == nil {
			t.overflows, t.drops = deref(ns.ListenOverflows), deref(ns.ListenDrops)
			ok = true
		}
		if sn, err := netProc.Snmp(); err == nil {
			t.retrans, t.outSegs, t.currEstab = deref(sn.RetransSegs), deref(sn.OutSegs), deref(sn.CurrEstab)
			ok = true
		}
		if ok {
			r.tcp = t
		}
	}
	if s, err := m.fs.NetSockstat(); err == nil {
		r.sock = s
	}
	return r, notes, nil
}

func deref(p *float64) float64 {
	if p == nil {
		return 0
	}
	return *p
}

func (m *machineWatch) sample(now time.Time) (*evidence.ProcRecord, []string, error) {
	cur, notes, err := m.read(now)
	if err != nil {
		return nil, notes, err
	}
	prev := m.prev
	m.prev = cur
	if prev == nil {
		return nil, notes, nil
	}
	dt := cur.t.Sub(prev.t).Seconds()
	if dt <= 0 {
		return nil, notes, nil
	}
	s := &evidence.MachineSample{Cores: len(cur.stat.CPU)}
	s.CPUBusy, s.CPUSteal, s.CPUIOWait = cpuShares(prev.stat.CPUTotal, cur.stat.CPUTotal)
	ids := make([]int64, 0, len(cur.stat.CPU))
	for id := range cur.stat.CPU {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		p, ok := prev.stat.CPU[id]
		if !ok {
			s.CPUBusyPerCore = append(s.CPUBusyPerCore, 0)
			continue
		}
		busy, _, _ := cpuShares(p, cur.stat.CPU[id])
		s.CPUBusyPerCore = append(s.CPUBusyPerCore, busy)
	}
	if cur.load != nil {
		s.Load1, s.Load5, s.Load15 = cur.load.Load1, cur.load.Load5, cur.load.Load15
	}
	if len(cur.psi) == len(psiResources) && len(prev.psi) == len(psiResources) {
		s.PSI = &evidence.PSI{
			CPU:    psiResource(prev.psi["cpu"], cur.psi["cpu"], dt),
			Memory: psiResource(prev.psi["memory"], cur.psi["memory"], dt),
			IO:     psiResource(prev.psi["io"], cur.psi["io"], dt),
		}
	}
	if prev.tcp != nil && cur.tcp != nil {
		rate := func(a, b float64) float64 { return max(0, b-a) / dt }
		s.TCPListenOverflowsPerSec = rate(prev.tcp.overflows, cur.tcp.overflows)
		s.TCPListenDropsPerSec = rate(prev.tcp.drops, cur.tcp.drops)
		s.TCPRetransSegsPerSec = rate(prev.tcp.retrans, cur.tcp.retrans)
		s.TCPOutSegsPerSec = rate(prev.tcp.outSegs, cur.tcp.outSegs)
		s.TCPCurrEstab = int64(cur.tcp.currEstab)
	}
	if cur.sock != nil {
		if cur.sock.Used != nil {
			s.SocketsUsed = *cur.sock.Used
		}
		for _, pr := range cur.sock.Protocols {
			if pr.Protocol != "TCP" {
				continue
			}
			s.TCPInUse = pr.InUse
			if pr.TW != nil {
				s.TCPTimeWait = *pr.TW
			}
			if pr.Orphan != nil {
				s.TCPOrphan = *pr.Orphan
			}
		}
	}
	return &evidence.ProcRecord{
		T: now.UnixMilli(), Role: evidence.RoleMachine,
		IntervalMS: cur.t.Sub(prev.t).Milliseconds(), Machine: s,
	}, notes, nil
}

// cpuShares returns the busy, steal and iowait shares of the time between
// two readings of a CPU (or of all CPUs): busy is everything but idle and
// iowait (user, nice, system, irq, softirq, steal).
func cpuShares(a, b procfs.CPUStat) (busy, steal, iowait float64) {
	d := func(x, y float64) float64 { return max(0, y-x) }
	idle := d(a.Idle, b.Idle)
	io := d(a.Iowait, b.Iowait)
	st := d(a.Steal, b.Steal)
	work := d(a.User, b.User) + d(a.Nice, b.Nice) + d(a.System, b.System) + d(a.IRQ, b.IRQ) + d(a.SoftIRQ, b.SoftIRQ) + st
	total := work + idle + io
	if total <= 0 {
		return 0, 0, 0
	}
	return work / total, st / total, io / total
}

func psiResource(a, b procfs.PSIStats, dt float64) evidence.PSIResource {
	var r evidence.PSIResource
	if b.Some != nil {
		r.SomeAvg10 = b.Some.Avg10
		if a.Some != nil && b.Some.Total >= a.Some.Total {
			r.Some = min(1, float64(b.Some.Total-a.Some.Total)/1e6/dt) // totals are microseconds
		}
	}
	if b.Full != nil {
		r.FullAvg10 = b.Full.Avg10
		if a.Full != nil && b.Full.Total >= a.Full.Total {
			r.Full = min(1, float64(b.Full.Total-a.Full.Total)/1e6/dt)
		}
	}
	return r
}
