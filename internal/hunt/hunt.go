// Package hunt runs the capacity search against a target: it drives the load
// engine step by step, starts and stops the probes on the run's one clock,
// rewrites report.json after every step and diagnoses the evidence at the end.
package hunt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"github.com/chokepoint/chokepoint/internal/capacity"
	"github.com/chokepoint/chokepoint/internal/load"
	"github.com/chokepoint/chokepoint/internal/probe"
	"github.com/chokepoint/chokepoint/internal/report"
	"github.com/chokepoint/chokepoint/internal/run"
)

// Config is one hunt. Zero values mean defaults.
type Config struct {
	Load   load.Config           // the engine (Source is required)
	Search capacity.SearchConfig // objective, bounds, step lengths
	URLs   []string              // for the report
	PID    int                   // the target's process, when known
	Probes []probe.Probe         // evidence sources, already built
	Notes  []report.Coverage     // coverage decided before the hunt (discovery)
	// Discovery is one line saying what discovery found (report notes).
	Discovery string
	Dir       *run.Dir     // where everything is written
	Cores     int          // the machine's CPUs (0: runtime.NumCPU)
	Logger    *slog.Logger // nil: discard
	// Progress, when set, is called after every window (from one goroutine).
	Progress func(Progress)
}

// Progress is the live view of a hunt.
type Progress struct {
	Step        int
	Phase       capacity.Phase
	OfferedRPS  float64
	AchievedRPS float64
	P99         time.Duration
	ErrorRate   float64
	SLOP99      time.Duration
	Elapsed     time.Duration
	Probes      []string // sources collecting
}

// ErrUnreachable means not one request reached the target.
var ErrUnreachable = errors.New("target unreachable")

// Run hunts. It returns the final report (also written to the run
// directory); when ctx is cancelled it stops, finishes the report from what
// it has (status partial) and returns it with ctx's error.
func Run(ctx context.Context, cfg Config) (*report.Report, error) {
	if cfg.Dir == nil {
		return nil, errors.New("hunt: no run directory")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Cores == 0 {
		cfg.Cores = runtime.NumCPU()
	}
	search, err := capacity.NewSearch(cfg.Search)
	if err != nil {
		return nil, fmt.Errorf("hunt: %w", err)
	}
	eng, err := load.NewEngine(cfg.Load)
	if err != nil {
		return nil, fmt.Errorf("hunt: %w", err)
	}
	defer eng.Close()

	h := &hunter{cfg: cfg, search: search, eng: eng, start: time.Now(), stepTimes: map[int][2]int64{}}
	h.rep = h.baseReport()
	if err := cfg.Dir.WriteJSON(run.ReportFile, h.rep); err != nil {
		return nil, err
	}
	rw, err := load.NewRunWriter(cfg.Dir, h.start)
	if err != nil {
		return nil, err
	}
	defer rw.Close()
	h.rw = rw

	probeCtx, stopProbes := context.WithCancel(context.WithoutCancel(ctx))
	h.startProbes(probeCtx)

	loopErr := h.loop(ctx)

	stopProbes()
	h.wg.Wait()
	status := run.StatusComplete
	if ctx.Err() != nil {
		status = run.StatusPartial
	}
	rep := h.finish(status)
	if err := cfg.Dir.WriteJSON(run.ReportFile, rep); err != nil {
		return rep, err
	}
	if err := writeHTML(cfg.Dir, rep); err != nil {
		cfg.Logger.Warn("write report.html", "err", err)
	}
	if loopErr != nil {
		return rep, loopErr
	}
	if h.total != nil && h.total.Requests() > 0 && h.total.Unreachable() {
		return rep, ErrUnreachable
	}
	return rep, ctx.Err()
}

type hunter struct {
	cfg    Config
	search *capacity.Search
	eng    *load.Engine
	rw     *load.RunWriter
	start  time.Time
	rep    *report.Report

	wg        sync.WaitGroup
	mu        sync.Mutex
	probeErrs map[string]error

	total     *load.Result
	stepTimes map[int][2]int64 // plan index -> start, end (Unix ms)
}

func (h *hunter) baseReport() *report.Report {
	return &report.Report{
		Schema:  report.Schema,
		Status:  run.StatusPartial,
		Target:  report.Target{URLs: h.cfg.URLs, PID: h.cfg.PID},
		SLO:     report.SLO{P99MS: float64(h.cfg.Search.SLOP99) / float64(time.Millisecond), ErrorRate: h.cfg.Search.SLOErrorRate},
		StartMS: h.start.UnixMilli(),
		Capacity: report.Capacity{
			LimitedBy: report.LimitedNotReached,
		},
		Steps:     []report.Step{},
		Endpoints: []report.Endpoint{},
		Findings:  []report.Finding{},
		RuledOut:  []report.RuledOut{},
		Coverage:  []report.Coverage{},
	}
}

func (h *hunter) startProbes(ctx context.Context) {
	h.probeErrs = map[string]error{}
	for _, p := range h.cfg.Probes {
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			if err := p.Run(ctx, h.cfg.Dir); err != nil && ctx.Err() == nil {
				h.mu.Lock()
				h.probeErrs[p.Source()] = err
				h.mu.Unlock()
				h.cfg.Logger.Warn("probe stopped", "source", p.Source(), "err", err)
			}
		}()
	}
}

func (h *hunter) observers() []probe.StepObserver {
	var obs []probe.StepObserver
	for _, p := range h.cfg.Probes {
		if o, ok := p.(probe.StepObserver); ok {
			obs = append(obs, o)
		}
	}
	return obs
}

// loop runs the search's steps until it is done or ctx is cancelled.
func (h *hunter) loop(ctx context.Context) error {
	obs := h.observers()
	for {
		if ctx.Err() != nil {
			h.search.Interrupt()
			return nil
		}
		plan, ok := h.search.Next(time.Since(h.start))
		if !ok {
			return nil
		}
		st := probe.Step{Index: plan.Index, OfferedRPS: plan.RPS, Start: time.Now(), Planned: plan.Duration}
		for _, o := range obs {
			o.StepStarted(ctx, st)
		}
		res, err := h.runStep(ctx, plan)
		for _, o := range obs {
			o.StepEnded(ctx, st)
		}
		if err != nil {
			return err
		}
		if res.Interrupted && ctx.Err() != nil {
			// Ctrl-C mid-step: the step is not judged.
			h.search.Interrupt()
			return nil
		}
		h.search.EndStep(stepResult(res))
		h.rep = h.assemble(run.StatusPartial)
		if err := h.cfg.Dir.WriteJSON(run.ReportFile, h.rep); err != nil {
			return err
		}
		if h.total.Requests() > 0 && h.total.Unreachable() {
			return ErrUnreachable
		}
	}
}

func (h *hunter) runStep(ctx context.Context, plan capacity.Plan) (*load.Result, error) {
	stepCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var werr error
	stepStart := time.Now()
	res, err := h.eng.Run(stepCtx, load.Constant(plan.RPS), load.Bound{Duration: plan.Duration}, func(w *load.Window) {
		if err := h.rw.Window(plan.Index, w); err != nil && werr == nil {
			werr = err
		}
		ws := windowStat(w)
		if h.search.Window(ws) != capacity.Continue {
			cancel()
		}
		if h.cfg.Progress != nil {
			h.cfg.Progress(Progress{Step: plan.Index, Phase: plan.Phase, OfferedRPS: plan.RPS, AchievedRPS: ws.AchievedRPS,
				P99: ws.P99, ErrorRate: w.All.ErrorRate(), SLOP99: h.cfg.Search.SLOP99, Elapsed: time.Since(h.start), Probes: h.collecting()})
		}
	})
	if err != nil {
		return nil, fmt.Errorf("step %d at %.0f req/s: %w", plan.Index, plan.RPS, err)
	}
	if werr != nil {
		return nil, werr
	}
	end := time.Now()
	if !res.End.IsZero() {
		end = res.End
	}
	h.stepTimes[plan.Index] = [2]int64{stepStart.UnixMilli(), end.UnixMilli()}
	if h.total == nil {
		h.total = res
	} else {
		h.total.Merge(res)
	}
	return res, nil
}

func (h *hunter) collecting() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, p := range h.cfg.Probes {
		if _, failed := h.probeErrs[p.Source()]; !failed {
			out = append(out, p.Source())
		}
	}
	return out
}

// writeHTML renders report.html from the report and the run directory.
func writeHTML(dir *run.Dir, rep *report.Report) error {
	opt, err := report.LoadHTMLInputs(dir.Path(), rep)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := report.WriteHTML(&buf, rep, opt); err != nil {
		return err
	}
	return dir.WriteFile(run.HTMLFile, buf.Bytes())
}
