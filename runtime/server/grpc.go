package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/modelrt/modelrt/runtime/engine"
	"github.com/modelrt/modelrt/runtime/server/kservepb"
	"github.com/modelrt/modelrt/sdk"
)

// KServe's Open Inference Protocol v2 over gRPC (inference.GRPCInferenceService, the proto in
// kservepb): the same models, checks, auth, limits and metrics as the REST form in kserve.go —
// ModelInfer runs the REST handler's core, v2Run. Inputs come as typed contents or as
// raw_input_contents; outputs always go back as raw_output_contents.

// grpcResponseSlack is what a ModelInfer response may hold beyond Options.MaxResponseBytes of
// tensor data: names, shapes and framing.
const grpcResponseSlack = 1 << 20

// GRPCServer returns a gRPC server of the v2 protocol over s. Messages are bounded by
// Options.MaxBodyBytes (in) and MaxResponseBytes (out); a request must carry the bearer token in
// its "authorization" metadata, as over HTTP, except ServerLive and ServerReady (probes).
func (s *Server) GRPCServer() *grpc.Server {
	gs := grpc.NewServer(
		grpc.MaxRecvMsgSize(int(min(s.opts.MaxBodyBytes, math.MaxInt32))),
		grpc.MaxSendMsgSize(s.opts.MaxResponseBytes+grpcResponseSlack),
		grpc.ConnectionTimeout(s.opts.ReadHeaderTimeout),
		grpc.UnaryInterceptor(s.grpcIntercept),
	)
	kservepb.RegisterGRPCInferenceServiceServer(gs, &grpcService{s: s})
	return gs
}

// grpcCall is what a handler tells the interceptor: the model the call reached.
type grpcCall struct{ target string }

type grpcCallKey struct{}

// grpcIntercept authenticates, logs and counts every call.
func (s *Server) grpcIntercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	start := time.Now()
	method := info.FullMethod[strings.LastIndexByte(info.FullMethod, '/')+1:]
	call := &grpcCall{}
	ctx = context.WithValue(ctx, grpcCallKey{}, call)
	var res any
	var err error
	if method != "ServerLive" && method != "ServerReady" && !s.grpcAuthorized(ctx) {
		err = status.Error(codes.Unauthenticated, "missing or wrong bearer token (metadata \"authorization: Bearer TOKEN\")")
	} else {
		res, err = h(ctx, req)
	}
	st := status.Convert(err)
	level := slog.LevelInfo
	switch {
	case grpcServerFault(st.Code()):
		level = slog.LevelWarn
	case err == nil && grpcAPIs[method] == "":
		level = slog.LevelDebug
	}
	remote := ""
	if p, ok := peer.FromContext(ctx); ok {
		remote = p.Addr.String()
	}
	s.log.Log(ctx, level, "grpc request", "method", method, "code", st.Code().String(),
		"duration_ms", float64(time.Since(start).Microseconds())/1000, "remote", remote, "target", call.target)
	if api := grpcAPIs[method]; api != "" {
		s.metrics.requests.WithLabelValues(api, call.target, strconv.Itoa(grpcHTTPStatus(st.Code()))).Inc()
		s.metrics.latency.WithLabelValues(api, call.target).Observe(time.Since(start).Seconds())
	}
	return res, err
}

// grpcAPIs are the calls counted in modelrt_requests_total, by their api label.
var grpcAPIs = map[string]string{
	"ModelInfer": "grpc_infer", "RepositoryIndex": "grpc_repository",
	"RepositoryModelLoad": "grpc_repository", "RepositoryModelUnload": "grpc_repository",
}

func grpcServerFault(c codes.Code) bool {
	return c == codes.Internal || c == codes.Unavailable || c == codes.DeadlineExceeded || c == codes.Unknown
}

// grpcAuthorized checks the "authorization" metadata as authorized checks the header.
func (s *Server) grpcAuthorized(ctx context.Context) bool {
	if s.opts.AuthToken == "" {
		return true
	}
	md, _ := metadata.FromIncomingContext(ctx)
	for _, h := range md.Get("authorization") {
		const prefix = "Bearer "
		if len(h) < len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
			continue
		}
		got := sha256.Sum256([]byte(h[len(prefix):]))
		if subtle.ConstantTimeCompare(got[:], s.token[:]) == 1 {
			return true
		}
	}
	return false
}

// grpcCodes maps the HTTP statuses of httpError to gRPC codes; grpcHTTPStatus the other way,
// so that gRPC calls are counted in modelrt_requests_total with the statuses REST would answer.
var grpcCodes = map[int]codes.Code{
	http.StatusBadRequest: codes.InvalidArgument, http.StatusUnauthorized: codes.Unauthenticated,
	http.StatusNotFound: codes.NotFound, http.StatusConflict: codes.AlreadyExists,
	http.StatusRequestEntityTooLarge: codes.ResourceExhausted, http.StatusTooManyRequests: codes.ResourceExhausted,
	http.StatusNotImplemented: codes.Unimplemented, http.StatusServiceUnavailable: codes.Unavailable,
	http.StatusGatewayTimeout: codes.DeadlineExceeded, statusClientClosed: codes.Canceled,
	http.StatusInternalServerError: codes.Internal,
}

func grpcHTTPStatus(c codes.Code) int {
	switch c {
	case codes.OK:
		return http.StatusOK
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.FailedPrecondition:
		return http.StatusConflict
	}
	for h, g := range grpcCodes {
		if g == c && h != http.StatusRequestEntityTooLarge {
			return h
		}
	}
	return http.StatusInternalServerError
}

// grpcError is err as a gRPC status, with the message REST would send.
func grpcError(err error) error {
	if _, ok := status.FromError(err); ok && !errors.As(err, new(*httpError)) {
		return err
	}
	he := classify(err)
	c, ok := grpcCodes[he.status]
	if !ok {
		c = codes.Internal
	}
	if he.code == "model_not_loaded" {
		// REST's 409: the model is unloaded until a load; FAILED_PRECONDITION says "do not
		// retry until the state is fixed" (UNAVAILABLE would invite automatic retries).
		c = codes.FailedPrecondition
	}
	return status.Error(c, he.msg)
}

type grpcService struct {
	kservepb.UnimplementedGRPCInferenceServiceServer
	s *Server
}

func (g *grpcService) ServerLive(context.Context, *kservepb.ServerLiveRequest) (*kservepb.ServerLiveResponse, error) {
	return &kservepb.ServerLiveResponse{Live: true}, nil
}

func (g *grpcService) ServerReady(context.Context, *kservepb.ServerReadyRequest) (*kservepb.ServerReadyResponse, error) {
	return &kservepb.ServerReadyResponse{Ready: g.s.ready(g.s.Engine())}, nil
}

func (g *grpcService) ServerMetadata(context.Context, *kservepb.ServerMetadataRequest) (*kservepb.ServerMetadataResponse, error) {
	return &kservepb.ServerMetadataResponse{Name: "modelrt", Version: g.s.opts.Version, Extensions: []string{"model_repository"}}, nil
}

// model runs f on the current engine with the named model, counted in flight there.
func (g *grpcService) model(ctx context.Context, name, version string, f func(*state, *engine.Model) error) error {
	st, err := g.s.acquire()
	if err != nil {
		return grpcError(err)
	}
	defer st.flight.Done()
	m, err := v2LookupName(st.e, name, version)
	if err != nil {
		return grpcError(err)
	}
	if c, ok := ctx.Value(grpcCallKey{}).(*grpcCall); ok {
		c.target = m.Name
	}
	return grpcError(f(st, m))
}

func (g *grpcService) ModelReady(ctx context.Context, req *kservepb.ModelReadyRequest) (*kservepb.ModelReadyResponse, error) {
	res := &kservepb.ModelReadyResponse{}
	err := g.model(ctx, req.Name, req.Version, func(st *state, m *engine.Model) error {
		res.Ready = g.s.modelReady(st, m)
		return nil
	})
	return res, err
}

func (g *grpcService) ModelMetadata(ctx context.Context, req *kservepb.ModelMetadataRequest) (*kservepb.ModelMetadataResponse, error) {
	res := &kservepb.ModelMetadataResponse{}
	err := g.model(ctx, req.Name, req.Version, func(st *state, m *engine.Model) error {
		in, out := modelSpecs(m)
		conv := func(specs []v2Spec) []*kservepb.ModelMetadataResponse_TensorMetadata {
			r := []*kservepb.ModelMetadataResponse_TensorMetadata{}
			for _, t := range specs {
				r = append(r, &kservepb.ModelMetadataResponse_TensorMetadata{Name: t.Name, Datatype: t.Datatype, Shape: t.Shape})
			}
			return r
		}
		res.Name, res.Versions, res.Platform = m.Name, []string{"1"}, "modelrt/"+m.BackendName
		res.Inputs, res.Outputs = conv(in), conv(out)
		return nil
	})
	return res, err
}

func (g *grpcService) ModelInfer(ctx context.Context, req *kservepb.ModelInferRequest) (*kservepb.ModelInferResponse, error) {
	var res *kservepb.ModelInferResponse
	err := g.model(ctx, req.ModelName, req.ModelVersion, func(st *state, m *engine.Model) error {
		ctx, cancel := context.WithTimeout(ctx, g.s.opts.RequestTimeout)
		defer cancel()
		vreq, err := grpcRequest(req)
		if err != nil {
			return err
		}
		return g.s.v2Run(ctx, st, m, vreq, func(i int) (*sdk.Tensor, error) { return grpcTensor(req, i) },
			func(out *sdk.InferResponse) error {
				res, err = g.s.grpcResponse(m, vreq, out)
				return err
			})
	})
	return res, err
}

// grpcRequest is the v2 request a ModelInfer call makes: names, datatypes and shapes of its
// inputs (their data stays in req until grpcTensor), parameters and outputs.
func grpcRequest(req *kservepb.ModelInferRequest) (*v2InferRequest, error) {
	if n := len(req.RawInputContents); n > 0 && n != len(req.Inputs) {
		return nil, errorf(http.StatusBadRequest, "invalid_request", "raw_input_contents: %d entries for %d inputs (one per input, in their order)", n, len(req.Inputs))
	}
	v := &v2InferRequest{ID: req.Id, Parameters: grpcParams(req.Parameters)}
	for _, in := range req.Inputs {
		v.Inputs = append(v.Inputs, v2Tensor{Name: in.Name, Shape: in.Shape, Datatype: in.Datatype})
	}
	for _, o := range req.Outputs {
		v.Outputs = append(v.Outputs, v2RequestOutput{Name: o.Name, Parameters: grpcParams(o.Parameters)})
	}
	return v, nil
}

func grpcParams(p map[string]*kservepb.InferParameter) map[string]any {
	out := map[string]any{}
	for k, v := range p {
		switch c := v.GetParameterChoice().(type) {
		case *kservepb.InferParameter_StringParam:
			out[k] = c.StringParam
		case *kservepb.InferParameter_BoolParam:
			out[k] = c.BoolParam
		case *kservepb.InferParameter_Int64Param:
			out[k] = c.Int64Param
		}
	}
	return out
}

// grpcTensor converts input i of req to a backend tensor, with the checks toTensor makes of
// JSON data: a known datatype, a valid shape, exactly the elements it declares, integers in
// range, finite floats. Raw contents may also carry FP16 and BF16 (as the protocol requires).
func grpcTensor(req *kservepb.ModelInferRequest, i int) (*sdk.Tensor, error) {
	in := req.Inputs[i]
	if in.Name == "" {
		return nil, badInput("", "name: required")
	}
	dt, ok := v2Types[in.Datatype]
	if !ok {
		return nil, badInput(in.Name, "datatype %q: want FP32, FP16, BF16, INT64, INT32, UINT8 or BOOL", in.Datatype)
	}
	n, err := sdk.NumElements(in.Shape, dt.Size())
	if err != nil {
		return nil, badInput(in.Name, "shape %v: %v", in.Shape, err)
	}
	t := &sdk.Tensor{DType: dt, Shape: in.Shape}
	if t.Shape == nil {
		t.Shape = []int64{}
	}
	if len(req.RawInputContents) > 0 {
		if in.Contents != nil {
			return nil, badInput(in.Name, "contents and raw_input_contents are both given; use one")
		}
		raw := req.RawInputContents[i]
		if want := n * int64(dt.Size()); int64(len(raw)) != want {
			return nil, badInput(in.Name, "raw_input_contents[%d]: shape %v of %s needs %d bytes, has %d", i, in.Shape, in.Datatype, want, len(raw))
		}
		t.Data = raw
	} else if t.Data, err = typedContents(in, dt, n); err != nil {
		return nil, err
	}
	return t, checkElements(in.Name, t)
}

// typedContents packs the contents field of in's datatype; any other field set is an error.
func typedContents(in *kservepb.ModelInferRequest_InferInputTensor, dt sdk.DType, n int64) ([]byte, error) {
	c := in.Contents
	if c == nil {
		return nil, badInput(in.Name, "contents: required (or raw_input_contents)")
	}
	counts := map[string]int{
		"bool_contents": len(c.BoolContents), "int_contents": len(c.IntContents), "int64_contents": len(c.Int64Contents),
		"uint_contents": len(c.UintContents), "uint64_contents": len(c.Uint64Contents), "fp32_contents": len(c.Fp32Contents),
		"fp64_contents": len(c.Fp64Contents), "bytes_contents": len(c.BytesContents),
	}
	field := map[sdk.DType]string{sdk.Float32: "fp32_contents", sdk.Int64: "int64_contents", sdk.Int32: "int_contents",
		sdk.Uint8: "uint_contents", sdk.Bool: "bool_contents"}[dt]
	if field == "" {
		return nil, badInput(in.Name, "datatype %s: send it in raw_input_contents (the protocol has no typed field for it)", in.Datatype)
	}
	for f, k := range counts {
		if f != field && k > 0 {
			return nil, badInput(in.Name, "contents.%s: datatype %s takes contents.%s", f, in.Datatype, field)
		}
	}
	if int64(counts[field]) != n {
		return nil, badInput(in.Name, "shape %v needs %d elements, contents.%s has %d", in.Shape, n, field, counts[field])
	}
	b := make([]byte, int(n)*dt.Size())
	for j := range int(n) {
		switch dt {
		case sdk.Float32:
			binary.LittleEndian.PutUint32(b[j*4:], math.Float32bits(c.Fp32Contents[j]))
		case sdk.Int64:
			binary.LittleEndian.PutUint64(b[j*8:], uint64(c.Int64Contents[j]))
		case sdk.Int32:
			binary.LittleEndian.PutUint32(b[j*4:], uint32(c.IntContents[j]))
		case sdk.Uint8:
			if c.UintContents[j] > math.MaxUint8 {
				return nil, badInput(in.Name, "element %d: %d is not a UINT8", j, c.UintContents[j])
			}
			b[j] = byte(c.UintContents[j])
		case sdk.Bool:
			if c.BoolContents[j] {
				b[j] = 1
			}
		}
	}
	return b, nil
}

// checkElements refuses non-finite FP32 elements and booleans other than 0 and 1.
func checkElements(name string, t *sdk.Tensor) error {
	switch t.DType {
	case sdk.Float32:
		for j := 0; j+4 <= len(t.Data); j += 4 {
			f := math.Float32frombits(binary.LittleEndian.Uint32(t.Data[j:]))
			if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
				return badInput(name, "element %d: %v is not finite: tensors must hold finite numbers", j/4, f)
			}
		}
	case sdk.Bool:
		for j, v := range t.Data {
			if v > 1 {
				return badInput(name, "element %d: byte %d is not a boolean (0 or 1)", j, v)
			}
		}
	}
	return nil
}

// grpcResponse answers with the outputs asked for (all when none is named) as raw contents,
// within Options.MaxResponseBytes.
func (s *Server) grpcResponse(m *engine.Model, req *v2InferRequest, res *sdk.InferResponse) (*kservepb.ModelInferResponse, error) {
	names, err := v2OutputNames(m, req, res)
	if err != nil {
		return nil, err
	}
	out := &kservepb.ModelInferResponse{ModelName: m.Name, ModelVersion: "1", Id: req.ID}
	size := 0
	for _, name := range names {
		t := res.Outputs[name]
		if err := t.Validate(); err != nil {
			return nil, errorf(http.StatusInternalServerError, "internal", "model %q: output %q: %v", m.Name, name, err)
		}
		if size += len(t.Data); size > s.opts.MaxResponseBytes {
			return nil, responseTooLarge(m, s.opts.MaxResponseBytes)
		}
		shape := t.Shape
		if shape == nil {
			shape = []int64{}
		}
		out.Outputs = append(out.Outputs, &kservepb.ModelInferResponse_InferOutputTensor{Name: name, Datatype: v2Type(t.DType), Shape: shape})
		out.RawOutputContents = append(out.RawOutputContents, t.Data)
	}
	return out, nil
}

// RepositoryIndex lists the configuration's models and their states (repository.go).
func (g *grpcService) RepositoryIndex(ctx context.Context, req *kservepb.RepositoryIndexRequest) (*kservepb.RepositoryIndexResponse, error) {
	st, err := g.s.acquire()
	if err != nil {
		return nil, grpcError(err)
	}
	defer st.flight.Done()
	res := &kservepb.RepositoryIndexResponse{Models: []*kservepb.RepositoryIndexResponse_ModelIndex{}}
	for _, e := range repositoryIndex(st.e, req.Ready) {
		res.Models = append(res.Models, &kservepb.RepositoryIndexResponse_ModelIndex{Name: e.Name, Version: e.Version, State: e.State, Reason: e.Reason})
	}
	return res, nil
}

// RepositoryModelLoad (re)loads a model as REST's load does.
func (g *grpcService) RepositoryModelLoad(ctx context.Context, req *kservepb.RepositoryModelLoadRequest) (*kservepb.RepositoryModelLoadResponse, error) {
	err := g.repositoryChange(ctx, req.ModelName, opLoad, req.Parameters)
	if err != nil {
		return nil, err
	}
	return &kservepb.RepositoryModelLoadResponse{}, nil
}

// RepositoryModelUnload unloads a model as REST's unload does.
func (g *grpcService) RepositoryModelUnload(ctx context.Context, req *kservepb.RepositoryModelUnloadRequest) (*kservepb.RepositoryModelUnloadResponse, error) {
	err := g.repositoryChange(ctx, req.ModelName, opUnload, req.Parameters)
	if err != nil {
		return nil, err
	}
	return &kservepb.RepositoryModelUnloadResponse{}, nil
}

func (g *grpcService) repositoryChange(ctx context.Context, name, op string, params map[string]*kservepb.ModelRepositoryParameter) error {
	if err := grpcRepositoryParams(op, params); err != nil {
		return grpcError(err)
	}
	st, err := g.s.acquire()
	if err != nil {
		return grpcError(err)
	}
	defer st.flight.Done()
	if err := repositoryModel(st.e, name); err != nil {
		return grpcError(err)
	}
	if c, ok := ctx.Value(grpcCallKey{}).(*grpcCall); ok {
		c.target = name
	}
	ctx, cancel := context.WithTimeout(ctx, g.s.opts.RequestTimeout)
	defer cancel()
	change := st.e.Load
	if op == opUnload {
		change = st.e.Unload
	}
	if err := change(ctx, name); err != nil {
		return grpcError(err)
	}
	ms, _ := st.e.Status(name)
	g.s.log.Info("repository "+op, "model", name, "state", ms.State, "protocol", "grpc")
	return nil
}

// grpcRepositoryParams checks a load's or an unload's parameters as REST's body is checked.
func grpcRepositoryParams(op string, params map[string]*kservepb.ModelRepositoryParameter) error {
	if len(params) == 0 {
		return nil
	}
	raw := map[string]json.RawMessage{}
	for k, p := range params {
		var v any
		switch c := p.GetParameterChoice().(type) {
		case *kservepb.ModelRepositoryParameter_BoolParam:
			v = c.BoolParam
		case *kservepb.ModelRepositoryParameter_Int64Param:
			v = c.Int64Param
		case *kservepb.ModelRepositoryParameter_StringParam:
			v = c.StringParam
		case *kservepb.ModelRepositoryParameter_BytesParam:
			v = c.BytesParam
		}
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		raw[k] = b
	}
	body, err := json.Marshal(repositoryRequest{Parameters: raw})
	if err != nil {
		return err
	}
	_, err = parseRepositoryRequest(op, body)
	return err
}
