package otlp

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Content types of OTLP/HTTP.
const (
	contentProto = "application/x-protobuf"
	contentJSON  = "application/json"
)

// TracesPath is the OTLP/HTTP traces endpoint.
const TracesPath = "/v1/traces"

var (
	errTooLarge    = errors.New("request too large")
	errUnsupported = errors.New("unsupported media type")
)

// dropMessage explains a partial success to the exporter.
const dropMessage = "chokepoint keeps a bounded sample of whole traces per second; the rest were dropped"

// Handler serves OTLP/HTTP traces (POST /v1/traces). Run serves it; it is
// exported for embedding the receiver in another server.
func (r *Receiver) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(TracesPath, r.serveTraces)
	return mux
}

func (r *Receiver) serveTraces(w http.ResponseWriter, req *http.Request) {
	ct := mediaType(req.Header.Get("Content-Type"))
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		r.refuse(w, ct, http.StatusMethodNotAllowed, "only POST is accepted")
		return
	}
	if ct != contentProto && ct != contentJSON {
		r.refuse(w, contentJSON, http.StatusUnsupportedMediaType,
			fmt.Sprintf("content type %q: want %s or %s", ct, contentProto, contentJSON))
		return
	}
	select {
	case r.sem <- struct{}{}:
		defer func() { <-r.sem }()
	case <-req.Context().Done():
		return
	}
	body, err := readBody(req.Body, req.Header.Get("Content-Encoding"), r.cfg.MaxRequestBytes)
	switch {
	case errors.Is(err, errTooLarge):
		r.refuse(w, ct, http.StatusRequestEntityTooLarge, err.Error())
		return
	case errors.Is(err, errUnsupported):
		r.refuse(w, ct, http.StatusUnsupportedMediaType, err.Error())
		return
	case err != nil:
		r.refuse(w, ct, http.StatusBadRequest, err.Error())
		return
	}
	er, err := decode(ct, body)
	if err != nil {
		r.refuse(w, ct, http.StatusBadRequest, err.Error())
		return
	}
	rejected := r.consume(er.Traces(), "http")

	resp := ptraceotlp.NewExportResponse()
	if rejected > 0 {
		resp.PartialSuccess().SetRejectedSpans(rejected)
		resp.PartialSuccess().SetErrorMessage(dropMessage)
	}
	var out []byte
	if ct == contentJSON {
		out, err = resp.MarshalJSON()
	} else {
		out, err = resp.MarshalProto()
	}
	if err != nil {
		r.refuse(w, ct, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(http.StatusOK)
	w.Write(out)
}

// refuse answers with an OTLP error: a google.rpc.Status in the request's
// encoding. 4xx other than 429 tell the exporter not to retry.
func (r *Receiver) refuse(w http.ResponseWriter, ct string, code int, msg string) {
	r.mu.Lock()
	r.badReqs++
	r.mu.Unlock()
	st := &rpcstatus.Status{Code: int32(httpToGRPC(code)), Message: msg}
	var body []byte
	if ct == contentProto {
		body, _ = proto.Marshal(st)
	} else {
		ct = contentJSON
		body = fmt.Appendf(nil, `{"code":%d,"message":%q}`, st.Code, msg)
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(code)
	w.Write(body)
}

func httpToGRPC(code int) codes.Code {
	switch code {
	case http.StatusBadRequest:
		return codes.InvalidArgument
	case http.StatusRequestEntityTooLarge:
		return codes.ResourceExhausted
	case http.StatusUnsupportedMediaType, http.StatusMethodNotAllowed:
		return codes.Unimplemented
	}
	return codes.Internal
}

func mediaType(v string) string {
	mt, _, err := mime.ParseMediaType(v)
	if err != nil {
		return strings.ToLower(strings.TrimSpace(v))
	}
	return mt
}

// readBody reads an export body of at most limit bytes, and, for gzip, at
// most limit bytes once decompressed, so that neither a large body nor a
// compression bomb can take more than about limit bytes of memory.
func readBody(body io.Reader, encoding string, limit int64) ([]byte, error) {
	var src io.Reader = io.LimitReader(body, limit+1)
	switch strings.ToLower(strings.TrimSpace(encoding)) {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(src)
		if err != nil {
			return nil, fmt.Errorf("gzip body: %w", err)
		}
		defer zr.Close()
		src = zr
	default:
		return nil, fmt.Errorf("content encoding %q: %w (want gzip or none)", encoding, errUnsupported)
	}
	b, err := io.ReadAll(io.LimitReader(src, limit+1))
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("body over %d bytes: %w", limit, errTooLarge)
	}
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	return b, nil
}

// decode parses an export request in the given content type. It never
// panics: a panic in the decoder on hostile input becomes an error.
func decode(ct string, body []byte) (er ptraceotlp.ExportRequest, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("decode %s: malformed payload (%v)", ct, p)
		}
	}()
	er = ptraceotlp.NewExportRequest()
	switch ct {
	case contentProto:
		err = er.UnmarshalProto(body)
	case contentJSON:
		err = er.UnmarshalJSON(body)
	default:
		err = fmt.Errorf("content type %q: %w", ct, errUnsupported)
	}
	if err != nil {
		return er, fmt.Errorf("decode %s: %w", ct, err)
	}
	return er, nil
}

// grpcTraces serves OTLP/gRPC TraceService/Export.
type grpcTraces struct {
	ptraceotlp.UnimplementedGRPCServer
	r *Receiver
}

func (g *grpcTraces) Export(ctx context.Context, req ptraceotlp.ExportRequest) (resp ptraceotlp.ExportResponse, err error) {
	select {
	case g.r.sem <- struct{}{}:
		defer func() { <-g.r.sem }()
	case <-ctx.Done():
		return ptraceotlp.NewExportResponse(), status.FromContextError(ctx.Err()).Err()
	}
	defer func() {
		if p := recover(); p != nil {
			err = status.Errorf(codes.InvalidArgument, "malformed payload (%v)", p)
		}
	}()
	rejected := g.r.consume(req.Traces(), "grpc")
	resp = ptraceotlp.NewExportResponse()
	if rejected > 0 {
		resp.PartialSuccess().SetRejectedSpans(rejected)
		resp.PartialSuccess().SetErrorMessage(dropMessage)
	}
	return resp, nil
}
