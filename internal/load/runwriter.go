package load

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/chokepoint/chokepoint/internal/evidence"
	"github.com/chokepoint/chokepoint/internal/run"
)

// RunWriter writes windows into a run directory as they close: one line of
// timeline.jsonl per window and, in latency.hlog, one latency histogram per
// endpoint per window (HdrHistogram's log format: compressed base64
// interchange, values in microseconds, tagged with the endpoint through
// HlogTag). Each window is handed to the kernel whole, so a killed run
// leaves complete records. Not safe for concurrent use.
type RunWriter struct {
	dir  *run.Dir
	hlog *os.File
	buf  bytes.Buffer
	lw   *hdr.HistogramLogWriter
}

// NewRunWriter opens the run directory's streams; start is the run's start
// (latency.hlog's base time).
func NewRunWriter(dir *run.Dir, start time.Time) (*RunWriter, error) {
	f, err := os.OpenFile(dir.Join(run.LatencyFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", run.LatencyFile, err)
	}
	w := &RunWriter{dir: dir, hlog: f}
	w.lw = hdr.NewHistogramLogWriter(&w.buf)
	ms := start.UnixMilli()
	w.lw.SetBaseTime(ms)
	w.lw.OutputLogFormatVersion()
	w.lw.OutputComment("[chokepoint latency from the intended send time; values in microseconds; Interval_Max = max/1e6 (seconds); Tag = endpoint name, %-escaped]")
	w.lw.OutputStartTime(ms)
	w.lw.OutputBaseTime(ms)
	w.lw.OutputLegend()
	if err := w.flush(); err != nil {
		f.Close()
		return nil, err
	}
	return w, nil
}

func (w *RunWriter) flush() error {
	_, err := w.hlog.Write(w.buf.Bytes())
	w.buf.Reset()
	if err != nil {
		return fmt.Errorf("write %s: %w", run.LatencyFile, err)
	}
	return nil
}

// Window appends win, part of the hunt's step (0 for a plain load run).
func (w *RunWriter) Window(step int, win *Window) error {
	if err := w.dir.Append(run.TimelineFile, win.Record(step)); err != nil {
		return err
	}
	for _, e := range win.Endpoints {
		if e.Requests == 0 {
			continue
		}
		e.Latency.SetTag(HlogTag(e.Name))
		e.Latency.SetStartTimeMs(win.Start.UnixMilli())
		e.Latency.SetEndTimeMs(win.End.UnixMilli())
		err := w.lw.OutputIntervalHistogram(e.Latency)
		e.Latency.SetTag("")
		if err != nil {
			w.buf.Reset()
			return fmt.Errorf("write %s: %w", run.LatencyFile, err)
		}
	}
	return w.flush()
}

// Close closes latency.hlog (timeline.jsonl belongs to the run directory).
func (w *RunWriter) Close() error {
	if err := w.hlog.Close(); err != nil {
		return fmt.Errorf("close %s: %w", run.LatencyFile, err)
	}
	return nil
}

// HlogTag escapes an endpoint name for an hlog Tag, which cannot hold
// commas, spaces or line breaks: those and '%' become %XX.
func HlogTag(name string) string {
	if !strings.ContainsAny(name, "%, \t\r\n") {
		return name
	}
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		switch c := name[i]; c {
		case '%', ',', ' ', '\t', '\r', '\n':
			fmt.Fprintf(&b, "%%%02X", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// ParseHlogTag reverses HlogTag.
func ParseHlogTag(tag string) string {
	if !strings.Contains(tag, "%") {
		return tag
	}
	var b strings.Builder
	for i := 0; i < len(tag); i++ {
		if tag[i] == '%' && i+2 < len(tag) {
			if v, err := strconv.ParseUint(tag[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 2
				continue
			}
		}
		b.WriteByte(tag[i])
	}
	return b.String()
}

// Record is the window's timeline line, for the hunt's step.
func (win *Window) Record(step int) evidence.WindowRecord {
	r := evidence.WindowRecord{
		T:                 win.End.UnixMilli(),
		StartMS:           win.Start.UnixMilli(),
		EndMS:             win.End.UnixMilli(),
		Step:              step,
		Window:            win.Index,
		AchievedRPS:       roundTo(win.AchievedRPS, 3),
		Arrivals:          win.Arrivals,
		Requests:          win.All.Requests,
		Errors:            win.All.Errors,
		Late:              win.Late,
		Dropped:           win.Dropped,
		LatencyMS:         windowLatency(win.All.Latency),
		ServiceMS:         windowLatency(win.All.Service),
		InflightMean:      roundTo(win.InflightMean, 3),
		InflightMax:       win.InflightMax,
		LoadgenCPUSeconds: roundTo(win.CPUSeconds, 4),
		LagP99MS:          roundTo(win.LagP99.Seconds()*1000, 3),
		LagMaxMS:          roundTo(win.LagMax.Seconds()*1000, 3),
		StatusCodes:       nilIfEmpty(win.All.StatusCodes()),
		ErrorsByClass:     nilIfEmpty(win.All.ErrorsByClass()),
		Endpoints:         []evidence.WindowEndpoint{},
	}
	if !win.Closed {
		o := roundTo(win.OfferedRPS, 3)
		r.OfferedRPS = &o
	}
	for _, e := range win.Endpoints {
		if e.Requests == 0 {
			continue
		}
		r.Endpoints = append(r.Endpoints, evidence.WindowEndpoint{
			Name:          e.Name,
			Requests:      e.Requests,
			Errors:        e.Errors,
			LatencyMS:     windowLatency(e.Latency),
			ServiceMS:     windowLatency(e.Service),
			StatusCodes:   nilIfEmpty(e.StatusCodes()),
			ErrorsByClass: nilIfEmpty(e.ErrorsByClass()),
			BytesIn:       e.BytesIn,
			BytesOut:      e.BytesOut,
		})
	}
	return r
}

func windowLatency(h *hdr.Histogram) evidence.WindowLatency {
	p := percentilesMS(h)
	return evidence.WindowLatency{P50: p.P50, P90: p.P90, P99: p.P99, Max: p.Max}
}

func nilIfEmpty(m map[string]int64) map[string]int64 {
	if len(m) == 0 {
		return nil
	}
	return m
}
