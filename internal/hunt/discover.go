package hunt

import (
	"context"
	"io"
	"net/http"
	"strings"
	"time"
)

// discovered is what a look at a local target found.
type discovered struct {
	pid                  int
	pidHow               string
	pprofURL, metricsURL string
}

// discoverProbeTimeout bounds each discovery request.
const discoverProbeTimeout = 2 * time.Second

// discoverLocal looks for pprof and metrics endpoints at a local origin.
func discoverLocal(ctx context.Context, origin string) discovered {
	var d discovered
	base := strings.TrimRight(origin, "/")
	if answers(ctx, base+"/debug/pprof/", "profile") {
		d.pprofURL = base + "/debug/pprof"
	}
	if answers(ctx, base+"/metrics", "# TYPE") {
		d.metricsURL = base + "/metrics"
	}
	return d
}

// answers GETs url and reports whether it answered 200 with marker in the
// first 64 KiB of its body.
func answers(ctx context.Context, url, marker string) bool {
	ctx, cancel := context.WithTimeout(ctx, discoverProbeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode == http.StatusOK && strings.Contains(string(b), marker)
}
