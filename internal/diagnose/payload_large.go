package diagnose

import (
	"fmt"
	"math"

	"github.com/chokepoint/chokepoint/internal/evidence"
	"github.com/chokepoint/chokepoint/internal/profilesum"
	"github.com/chokepoint/chokepoint/internal/report"
	"github.com/google/pprof/profile"
)

// Thresholds of payload.large.
const (
	// payloadLargeBytes: a mean response of at least 256 KiB is large:
	// 64 pages of memory, 180 full-size TCP segments, far beyond what one
	// API call needs to show a screen (issue 6 brief).
	payloadLargeBytes = 256 << 10
	// payloadBytesShare: the endpoint carries at least this share of the
	// response bytes at the knee, so its payload is what the transfer is.
	payloadBytesShare = 0.5
	// payloadCPUShare: at least this share of the target's CPU samples in
	// serialising, reading and sending the payload.
	payloadCPUShare = 0.3
	// payloadNetRate: response bytes at least this many per second at the
	// knee: 100 MB/s is 80% of a 1 Gbit/s link, the common server NIC; on
	// loopback the copying costs CPU at both ends instead.
	payloadNetRate = 100e6
	// payloadSizeRatio and payloadTimeRatio: with several endpoints, the
	// large one's responses at least payloadSizeRatio times the others'
	// and its low-load service time at least payloadTimeRatio times
	// theirs: time grows with size.
	payloadSizeRatio = 4.0
	payloadTimeRatio = 2.0
	// payloadPageBytes is the response size the gain estimate assumes after
	// the fix (a page of results without bulky fields).
	payloadPageBytes = 64 << 10
)

// payloadFrames are where a service spends CPU because a response is
// large: encoders, compressors and templates; writing to the connection;
// reading the rows that become the response.
var payloadFrames = []string{
	"encoding/json.", "encoding/xml.", "encoding/gob.", "encoding/csv.", "encoding/base64.",
	"google.golang.org/protobuf/", "github.com/golang/protobuf/", "github.com/json-iterator/",
	"github.com/goccy/go-json", "github.com/bytedance/sonic", "github.com/vmihailenco/msgpack",
	"compress/", "github.com/klauspost/compress", "html/template.", "text/template.",
	"net.(*conn).Write", "internal/poll.(*FD).Write", "internal/poll.(*FD).Writev", "net/http.(*response).Write",
	"net/http.(*chunkWriter).Write", "bufio.(*Writer).", "io.Copy",
	"github.com/jackc/pgx/v5.(*baseRows).", "github.com/jackc/pgx/v5/pgtype.", "github.com/jackc/pgx/v5/pgconn.(*ResultReader)",
	"github.com/jackc/pgx/v5.CollectRows", "github.com/jackc/pgx/v5.AppendRows", "database/sql.(*Rows).", "database/sql.convertAssign",
	"github.com/lib/pq.(*rows).", "github.com/go-sql-driver/mysql.(*textRows).", "github.com/go-sql-driver/mysql.(*binaryRows).",
}

type payloadLarge struct{}

var _ Rule = payloadLarge{}

func (payloadLarge) Kind() string { return "payload.large" }

// clLargestPayload returns the endpoint with the most response bytes at a
// step and its share of all response bytes.
func clLargestPayload(l clLoad) (*clEndpoint, float64) {
	var top *clEndpoint
	var total int64
	for _, e := range l.sortedEndpoints() {
		total += e.BytesIn
		if top == nil || e.BytesIn > top.BytesIn {
			top = e
		}
	}
	if top == nil || total <= 0 {
		return top, 0
	}
	return top, float64(top.BytesIn) / float64(total)
}

func (r payloadLarge) Check(in *Input) Result {
	focus := in.FocusStep()
	if focus < 0 {
		return Result{RuledOut: "could not check: no load step completed"}
	}
	fl := in.clLoadAt(focus)
	top, share := clLargestPayload(fl)
	if top == nil || top.Requests == 0 {
		return Result{RuledOut: "could not check: no responses at the knee"}
	}
	size := top.meanBytesIn()
	if size < payloadLargeBytes {
		return Result{RuledOut: fmt.Sprintf("the largest responses (%s) average %.1f KiB, below %d KiB", top.Name, size/1024, payloadLargeBytes>>10)}
	}
	if share < payloadBytesShare {
		return Result{RuledOut: fmt.Sprintf("%s's %.0f KiB responses are %s of the response bytes, below %s", top.Name, size/1024, pct(share), pct(payloadBytesShare))}
	}
	rate := in.Steps[focus].OfferedRPS
	bytesRate := 0.0
	if fl.Seconds > 0 {
		var all int64
		for _, e := range fl.Endpoints {
			all += e.BytesIn
		}
		bytesRate = float64(all) / fl.Seconds
	}
	f := report.Finding{Kind: r.Kind(), Locus: report.Locus{Endpoint: top.Name}}
	conf := 0.4
	impact := share
	costly := false
	var ev []report.Evidence
	if ps, ok := in.clPayloadCPUShare(focus); ok {
		ev = append(ev, report.Evidence{Source: "pprof", What: "share of the target's CPU serialising, reading and sending responses", Value: round3(ps), Unit: "ratio"})
		if ps >= payloadCPUShare {
			conf += 0.25
			// The large responses are the work on every resource a request
			// holds: the CPU that encodes them, the database connection
			// held while their rows are read, the network that carries
			// them. Their share of the bytes or of the CPU, whichever is
			// larger, is what they explain.
			impact = math.Max(impact, ps)
			costly = true
		}
	}
	if bytesRate >= payloadNetRate {
		conf += 0.1
		costly = true
	}
	if e, _, ok := estimateConcurrency(in); ok && e.queue >= concQueueFactor {
		conf += 0.1
		ev = append(ev, report.Evidence{Source: "loadgen", What: "mean service time at the knee against low load", Value: round1(e.queue), Unit: "x"})
	}
	if sat, why, ok := cpuSaturation(in, focus); ok {
		ev = append(ev, report.Evidence{Source: "proc", What: "target CPU share of what it can use at the knee (" + why + ")", Value: round3(sat.share), Unit: "ratio"})
		if bound, _ := cpuBound(in, focus, sat); bound {
			conf += 0.1
			costly = true
		}
	}
	if ratio, tr, ok := in.clSizeTime(top.Name); ok && ratio >= payloadSizeRatio && tr >= payloadTimeRatio {
		conf += 0.1
		ev = append(ev, report.Evidence{Source: "loadgen", What: "low-load service time of " + top.Name + " against the other endpoints", Value: round1(tr), Unit: "x"})
	}
	f.Evidence = append([]report.Evidence{
		{Source: "loadgen", What: "share of the work in the large responses (the larger of their share of response bytes and of the target's CPU)", Value: round3(impact), Unit: "ratio"},
		{Source: "loadgen", What: "mean response size of " + top.Name, Value: round1(size / 1024), Unit: "KiB"},
		{Source: "loadgen", What: "share of response bytes on " + top.Name + " at the knee", Value: round3(share), Unit: "ratio"},
		{Source: "loadgen", What: "response bytes per second at the knee", Value: round1(bytesRate / 1e6), Unit: "MB/s"},
	}, ev...)
	f.Title = fmt.Sprintf("Large responses: %s returns %.0f KiB per request (%.0f MB/s at %.0f req/s)", top.Name, size/1024, bytesRate/1e6, rate)
	f.Recommendation = fmt.Sprintf("Send less per request from %s: paginate (pages of tens of items with a cursor to the next page), leave out the fields the client does not show (long text, blobs), "+
		"select only those columns from the database, and compress (gzip) for clients across a network. Aim for responses under %d KiB.", top.Name, payloadPageBytes>>10)
	limiting := in.Breached() && costly
	if limiting {
		f.ExpectedGain = amdahlGain(in, math.Min(impact, 0.99), math.Max(1.01, size/payloadPageBytes), fmt.Sprintf("handling %.0f KiB responses (made %.0f KiB)", size/1024, float64(payloadPageBytes>>10)))
	}
	f.Impact = round3(clamp01(impact))
	f.Confidence = round3(math.Min(conf, 0.95))
	return Result{Findings: []Candidate{{Finding: f, Limiting: limiting}}}
}

// clPayloadCPUShare is the share of a step's CPU profile spent in
// payloadFrames; ok is false without a CPU profile.
func (in *Input) clPayloadCPUShare(step int) (float64, bool) {
	p, _, ok := in.clProfile(evidence.ProfileCPU, "", step, true)
	if !ok {
		return 0, false
	}
	return payloadShareOf(p)
}

func payloadShareOf(p *profile.Profile) (float64, bool) {
	i, err := profilesum.SampleIndex(p, "cpu")
	if err != nil {
		return 0, false
	}
	var tot, hit int64
	for _, s := range p.Sample {
		if i >= len(s.Value) {
			continue
		}
		tot += s.Value[i]
		for _, f := range clFrames(s) {
			if clHasPrefix(f, payloadFrames) {
				hit += s.Value[i]
				break
			}
		}
	}
	if tot <= 0 {
		return 0, false
	}
	return float64(hit) / float64(tot), true
}

// clSizeTime compares an endpoint with the others at low load: how many
// times larger its responses are and how many times longer it takes (the
// request-weighted medians). ok is false with one endpoint.
func (in *Input) clSizeTime(name string) (sizeRatio, timeRatio float64, ok bool) {
	b := in.BaselineStep()
	if b < 0 {
		return 0, 0, false
	}
	l := in.clLoadAt(b)
	me := l.Endpoints[name]
	if me == nil || me.Requests == 0 {
		return 0, 0, false
	}
	var bytes, req int64
	var t float64
	for n, e := range l.Endpoints {
		if n == name {
			continue
		}
		bytes += e.BytesIn
		req += e.Requests
		t += e.ServiceP50Sum
	}
	if req == 0 || bytes <= 0 || t <= 0 {
		return 0, 0, false
	}
	return me.meanBytesIn() / (float64(bytes) / float64(req)), me.serviceP50() / (t / float64(req)), true
}
