// Package promscrape scrapes a target's Prometheus text or OpenMetrics
// endpoint once a second, keeps the Go runtime, process, connection-pool and
// HTTP server families (and any asked for), turns counters into per-second
// rates and appends one record per scrape to metrics.jsonl.
package promscrape

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/chokepoint/chokepoint/internal/evidence"
	"github.com/chokepoint/chokepoint/internal/probe"
)

// Source is the coverage source name.
const Source = "metrics"

// Defaults; each is what a zero Config field means.
const (
	// DefaultInterval: one scrape per second, the run's window length.
	DefaultInterval = time.Second
	// DefaultMaxBytes bounds a scraped body. Prometheus's own default
	// body_size_limit is unlimited; 16 MiB is ~100k series of text,
	// several times a large service's exposition.
	DefaultMaxBytes = 16 << 20
	// DefaultMaxSamples bounds the samples kept per scrape, so that a
	// high-cardinality family cannot grow metrics.jsonl by megabytes a
	// second (10,000 samples are ~1 MB of JSON).
	DefaultMaxSamples = 10000
)

// acceptHeader prefers the classic text format (parsed by expfmt's fast
// text parser) and takes OpenMetrics 1.0 when that is all the target has.
const acceptHeader = "text/plain;version=0.0.4;q=1,application/openmetrics-text;version=1.0.0;q=0.5,*/*;q=0.1"

// Config configures a Probe. The zero value of each field but URL means
// its default.
type Config struct {
	// URL is the metrics endpoint, e.g. http://127.0.0.1:8080/metrics.
	URL string
	// Interval between scrapes (DefaultInterval).
	Interval time.Duration
	// Timeout of one scrape; 0 means 80% of Interval, so a slow scrape
	// never overlaps the next.
	Timeout time.Duration
	// MaxBytes bounds one body (DefaultMaxBytes).
	MaxBytes int64
	// MaxSamples bounds the samples kept per scrape (DefaultMaxSamples).
	MaxSamples int
	// Keep names more families to keep: exact names, or prefixes ending
	// in "*" ("myapp_queue_*").
	Keep []string
	// Client makes the requests; nil means a client without proxies.
	Client *http.Client
	// Logger receives debug messages; nil discards them.
	Logger *slog.Logger
}

// Validate checks the configuration; errors name the field.
func (c Config) Validate() error {
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("metrics: URL %q: want http(s)://host:port/metrics", c.URL)
	}
	if c.Interval < 0 || c.Timeout < 0 || c.MaxBytes < 0 || c.MaxSamples < 0 {
		return errors.New("metrics: Interval, Timeout, MaxBytes and MaxSamples must not be negative")
	}
	return nil
}

// Probe scrapes one endpoint. It implements probe.Probe.
type Probe struct {
	cfg    Config
	client *http.Client
	log    *slog.Logger

	mu       sync.Mutex
	prev     map[string]point
	scrapes  int
	failed   int
	kept     int // samples kept in the last good scrape
	families int
	format   string
	lastErr  string
	runErr   error
}

type point struct {
	v float64
	t time.Time
}

var _ probe.Probe = (*Probe)(nil)

// New returns a probe for the endpoint in cfg.
func New(cfg Config) (*Probe, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = cfg.Interval * 8 / 10
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.MaxSamples == 0 {
		cfg.MaxSamples = DefaultMaxSamples
	}
	client := cfg.Client
	if client == nil {
		client = &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 1}}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Probe{cfg: cfg, client: client, log: log, prev: map[string]point{}}, nil
}

// Source implements probe.Probe.
func (p *Probe) Source() string { return Source }

// Run scrapes until ctx is done. The first scrape must succeed, or the
// endpoint is reported unusable; later failures are recorded and skipped.
func (p *Probe) Run(ctx context.Context, sink probe.Sink) error {
	rec := p.Scrape(ctx)
	if rec.Error != "" {
		if ctx.Err() != nil {
			return nil
		}
		err := fmt.Errorf("metrics: %s: %s", p.cfg.URL, rec.Error)
		p.mu.Lock()
		p.runErr = err
		p.mu.Unlock()
		return err
	}
	if err := sink.Append(evidence.MetricsStream, rec); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	tick := time.NewTicker(p.cfg.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		rec := p.Scrape(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err := sink.Append(evidence.MetricsStream, rec); err != nil {
			p.fail(err.Error())
		}
	}
}

// Scrape fetches and records the endpoint once; the record's Error says
// why when it failed. Rates are relative to the previous good scrape.
func (p *Probe) Scrape(ctx context.Context) evidence.MetricsRecord {
	start := time.Now()
	rec := evidence.MetricsRecord{T: start.UnixMilli()}
	fams, format, err := p.fetch(ctx)
	rec.DurationMS = float64(time.Since(start).Microseconds()) / 1000
	rec.Format = format
	if err != nil {
		rec.Error = err.Error()
		p.fail(rec.Error)
		return rec
	}
	rec.Families = len(fams)
	next := map[string]point{}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, mf := range fams {
		if !p.keepFamily(mf.GetName()) {
			continue
		}
		ss, dropped := flatten(mf)
		rec.Dropped += dropped
		for _, s := range ss {
			if len(rec.Samples) >= p.cfg.MaxSamples {
				rec.Dropped++
				continue
			}
			if s.cumulative {
				k := seriesKey(s.MetricSample)
				if prev, ok := p.prev[k]; ok {
					if r, ok := rate(prev.v, s.Value, start.Sub(prev.t).Seconds()); ok {
						s.Rate = &r
					}
				}
				next[k] = point{v: s.Value, t: start}
			}
			rec.Samples = append(rec.Samples, s.MetricSample)
		}
	}
	p.prev = next
	p.scrapes++
	p.kept = len(rec.Samples)
	p.families = rec.Families
	p.format = format
	return rec
}

func (p *Probe) fetch(ctx context.Context) (fams []*dto.MetricFamily, format string, err error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.cfg.URL, nil)
	if err != nil {
		return nil, "", err
	}
	req.Header.Set("Accept", acceptHeader)
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, "", fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, p.cfg.MaxBytes+1))
	if err != nil {
		return nil, "", fmt.Errorf("read body: %w", err)
	}
	if int64(len(body)) > p.cfg.MaxBytes {
		return nil, "", fmt.Errorf("body over %d bytes", p.cfg.MaxBytes)
	}
	return Parse(bytes.NewReader(body), resp.Header.Get("Content-Type"))
}

// poolWords mark connection-pool families (database/sql's go_sql_*,
// pgxpool, HikariCP, generic pool and connection gauges).
var poolWords = []string{"pool", "conns", "connections", "acquire", "db_", "pgxpool", "hikari", "sql_"}

// keepFamily decides which families are recorded.
func (p *Probe) keepFamily(name string) bool {
	for _, k := range p.cfg.Keep {
		if pre, ok := strings.CutSuffix(k, "*"); ok {
			if strings.HasPrefix(name, pre) {
				return true
			}
		} else if name == k {
			return true
		}
	}
	return KeepByDefault(name)
}

// KeepByDefault reports whether a family is kept without being asked for:
// the Go runtime (go_*), the process (process_*), connection pools, and
// HTTP / gRPC server families.
func KeepByDefault(name string) bool {
	n := strings.ToLower(name)
	if strings.HasPrefix(n, "go_") || strings.HasPrefix(n, "process_") {
		return true
	}
	if strings.HasPrefix(n, "http_") || strings.Contains(n, "_http_") || strings.HasPrefix(n, "grpc_server_") {
		return true
	}
	for _, w := range poolWords {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

func (p *Probe) fail(msg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failed++
	p.lastErr = msg
	p.log.Debug("scrape failed", "url", p.cfg.URL, "err", msg)
}

// Coverage implements probe.Probe.
func (p *Probe) Coverage() probe.Coverage {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := probe.Coverage{Source: Source}
	switch {
	case p.runErr != nil:
		c.Status = probe.StatusUnavailable
		c.Detail = p.runErr.Error() + "; expose Prometheus metrics (e.g. promhttp.Handler() on /metrics) or pass --metrics URL"
		return c
	case p.scrapes == 0 && p.failed > 0:
		c.Status = probe.StatusError
	default:
		c.Status = probe.StatusOK
	}
	c.Detail = fmt.Sprintf("%s: %d scrapes (%s), %d families exposed, %d samples kept per scrape", p.cfg.URL, p.scrapes, p.format, p.families, p.kept)
	if p.failed > 0 {
		c.Detail += fmt.Sprintf("; %d scrapes failed, last: %s", p.failed, p.lastErr)
	}
	return c
}
