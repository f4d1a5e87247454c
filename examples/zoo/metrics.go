package zoo

import (
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// httpMetrics are the server's request metrics, labelled by route.
type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// newRegistry returns a registry with the Go runtime and process
// collectors, the request metrics and, when pool is set, the pool's
// statistics.
func newRegistry(pool func() *pgxpool.Pool) (*prometheus.Registry, *httpMetrics) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "http_server_requests_total",
			Help: "HTTP requests served, by method, route and status code.",
		}, []string{"method", "route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "http_server_request_duration_seconds",
			Help:    "Time to serve HTTP requests, by method and route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"method", "route"}),
	}
	reg.MustRegister(m.requests, m.duration)
	if pool != nil {
		reg.MustRegister(&poolCollector{pool: pool})
	}
	return reg, m
}

func (m *httpMetrics) observe(method, route string, code int, d time.Duration) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(method, route, strconv.Itoa(code)).Inc()
	m.duration.WithLabelValues(method, route).Observe(d.Seconds())
}

// poolCollector exports pgxpool.Stat. The names follow the pool's own
// statistic names under the prefix pgxpool_, with Prometheus' unit and
// _total suffixes.
type poolCollector struct {
	pool func() *pgxpool.Pool
}

var _ prometheus.Collector = (*poolCollector)(nil)

var (
	descAcquireCount = prometheus.NewDesc("pgxpool_acquire_count_total",
		"Successful connection acquires from the pool.", nil, nil)
	descAcquireDuration = prometheus.NewDesc("pgxpool_acquire_duration_seconds_total",
		"Total time spent acquiring connections from the pool (successful acquires).", nil, nil)
	descEmptyAcquire = prometheus.NewDesc("pgxpool_empty_acquire_count_total",
		"Successful acquires that had to wait because the pool had no idle connection.", nil, nil)
	descCanceledAcquire = prometheus.NewDesc("pgxpool_canceled_acquire_count_total",
		"Acquires cancelled by their context.", nil, nil)
	descNewConns = prometheus.NewDesc("pgxpool_new_conns_count_total",
		"Connections opened by the pool.", nil, nil)
	descLifetimeDestroy = prometheus.NewDesc("pgxpool_max_lifetime_destroy_count_total",
		"Connections closed for reaching their maximum lifetime.", nil, nil)
	descIdleDestroy = prometheus.NewDesc("pgxpool_max_idle_destroy_count_total",
		"Connections closed for being idle too long.", nil, nil)
	descAcquired = prometheus.NewDesc("pgxpool_acquired_conns",
		"Connections currently acquired (in use).", nil, nil)
	descIdle = prometheus.NewDesc("pgxpool_idle_conns",
		"Connections currently idle in the pool.", nil, nil)
	descConstructing = prometheus.NewDesc("pgxpool_constructing_conns",
		"Connections currently being opened.", nil, nil)
	descTotal = prometheus.NewDesc("pgxpool_total_conns",
		"Connections in the pool (acquired, idle and being opened).", nil, nil)
	descMax = prometheus.NewDesc("pgxpool_max_conns",
		"The pool's maximum size.", nil, nil)
)

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descAcquireCount, descAcquireDuration, descEmptyAcquire,
		descCanceledAcquire, descNewConns, descLifetimeDestroy, descIdleDestroy, descAcquired, descIdle,
		descConstructing, descTotal, descMax} {
		ch <- d
	}
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	p := c.pool()
	if p == nil {
		return
	}
	s := p.Stat()
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	counter(descAcquireCount, float64(s.AcquireCount()))
	counter(descAcquireDuration, s.AcquireDuration().Seconds())
	counter(descEmptyAcquire, float64(s.EmptyAcquireCount()))
	counter(descCanceledAcquire, float64(s.CanceledAcquireCount()))
	counter(descNewConns, float64(s.NewConnsCount()))
	counter(descLifetimeDestroy, float64(s.MaxLifetimeDestroyCount()))
	counter(descIdleDestroy, float64(s.MaxIdleDestroyCount()))
	gauge(descAcquired, float64(s.AcquiredConns()))
	gauge(descIdle, float64(s.IdleConns()))
	gauge(descConstructing, float64(s.ConstructingConns()))
	gauge(descTotal, float64(s.TotalConns()))
	gauge(descMax, float64(s.MaxConns()))
}
