package sdk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/modelrt/modelrt/sdk/internal/pb"
)

// PluginName is the name under which the backend is dispensed in the go-plugin PluginSet.
const PluginName = "backend"

// MaxMessageBytes bounds one gRPC message in either direction (1 GiB): large enough for full
// logits of a batch or an image, small enough to refuse absurd requests early.
const MaxMessageBytes = 1 << 30

// WindowBytes is the HTTP/2 flow-control window of host–plugin connections (both directions).
const WindowBytes = 4 << 20

// DialOptions are the gRPC options a host passes to go-plugin (ClientConfig.GRPCDialOptions).
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithInitialWindowSize(WindowBytes),
		grpc.WithInitialConnWindowSize(WindowBytes),
	}
}

// Handshake is the go-plugin handshake shared by the host and every backend. The magic cookie is
// not a security measure; it only stops a plugin binary from being run by hand by accident.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "MODELRT_PLUGIN",
	MagicCookieValue: "c1f3e7a2-modelrt-backend",
}

// grpcPlugin adapts a Backend to go-plugin's GRPCPlugin.
type grpcPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	impl Backend
	shm  *shmSegment // the plugin's end of the host's shared memory, nil without one
}

func (p *grpcPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pb.RegisterBackendServer(s, &grpcServer{impl: p.impl, shm: p.shm})
	return nil
}

func (p *grpcPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &Client{client: pb.NewBackendClient(c)}, nil
}

// HostPlugins returns the go-plugin VersionedPlugins a host passes to plugin.ClientConfig.
// The dispensed value (name PluginName) is a *Client.
func HostPlugins() map[int]plugin.PluginSet {
	return map[int]plugin.PluginSet{ProtocolVersion: {PluginName: &grpcPlugin{}}}
}

// ServerPlugins returns the VersionedPlugins that serve impl; Serve uses it, and so do
// in-process tests (plugin.TestPluginGRPCConn).
func ServerPlugins(impl Backend) map[int]plugin.PluginSet {
	return serverPlugins(impl, nil)
}

func serverPlugins(impl Backend, shm *shmSegment) map[int]plugin.PluginSet {
	return map[int]plugin.PluginSet{ProtocolVersion: {PluginName: &grpcPlugin{impl: impl, shm: shm}}}
}

// NewGRPCServer builds the gRPC server a plugin serves on, with MaxMessageBytes limits.
func NewGRPCServer(opts []grpc.ServerOption) *grpc.Server {
	opts = append(opts,
		grpc.MaxRecvMsgSize(MaxMessageBytes),
		grpc.MaxSendMsgSize(MaxMessageBytes),
		// A logits row is 200 KB: with gRPC's default 64 KB flow-control window every
		// response would wait for window updates. One window holds a whole message.
		grpc.InitialWindowSize(WindowBytes),
		grpc.InitialConnWindowSize(WindowBytes),
		// Reuse handler goroutines instead of starting one per call: ~15 µs off each round
		// trip here (BenchmarkInferLogits). Busy workers never queue a call; gRPC then starts
		// a goroutine as before. (Marked experimental in grpc-go.)
		grpc.NumStreamWorkers(4),
	)
	return grpc.NewServer(opts...)
}

// recoverInto turns a panic in a backend method into codes.Internal, so that one bad request
// does not take the plugin (and every session in it) down. It lives in the server shim rather
// than in an interceptor so that every way of serving (Serve, in-process tests) has it.
func recoverInto(err *error, method string) {
	if r := recover(); r != nil {
		slog.Error("backend panicked", "method", method, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		*err = status.Errorf(codes.Internal, "backend panicked in %s: %v", method, r)
	}
}

// toStatus converts a backend's error into a gRPC status error.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var e *Error
	if errors.As(err, &e) {
		return status.Error(codes.Code(e.Code), e.Message)
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

// fromStatus converts a gRPC error into an *Error with the same code.
func fromStatus(err error) error {
	if err == nil {
		return nil
	}
	if s, ok := status.FromError(err); ok {
		return &Error{Code: Code(s.Code()), Message: s.Message()}
	}
	return err
}

func codeOfContext(err error) Code {
	switch {
	case errors.Is(err, context.Canceled):
		return CodeCanceled
	case errors.Is(err, context.DeadlineExceeded):
		return CodeDeadlineExceeded
	}
	return CodeUnknown
}

// grpcServer serves a Backend over gRPC.
type grpcServer struct {
	pb.UnimplementedBackendServer
	impl Backend
	shm  *shmSegment
}

func (s *grpcServer) Describe(ctx context.Context, _ *pb.DescribeRequest) (_ *pb.DescribeResponse, err error) {
	defer recoverInto(&err, "Describe")
	d, err := s.impl.Describe(ctx, &DescribeRequest{})
	if err != nil {
		return nil, toStatus(err)
	}
	d.ProtocolVersion = ProtocolVersion
	return describeToPB(d), nil
}

func (s *grpcServer) Configure(ctx context.Context, req *pb.ConfigureRequest) (_ *pb.ConfigureResponse, err error) {
	defer recoverInto(&err, "Configure")
	c, ok := s.impl.(Configurer)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "this backend takes no config block")
	}
	if _, err := c.Configure(ctx, &ConfigureRequest{Config: req.ConfigJson}); err != nil {
		return nil, toStatus(err)
	}
	return &pb.ConfigureResponse{}, nil
}

func (s *grpcServer) LoadModel(ctx context.Context, req *pb.LoadModelRequest) (_ *pb.LoadModelResponse, err error) {
	defer recoverInto(&err, "LoadModel")
	r, err := s.impl.LoadModel(ctx, &LoadModelRequest{Name: req.Name, Path: req.Path, Task: req.Task, Options: req.Options})
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.LoadModelResponse{Model: modelInfoToPB(r.Model)}, nil
}

func (s *grpcServer) UnloadModel(ctx context.Context, req *pb.UnloadModelRequest) (_ *pb.UnloadModelResponse, err error) {
	defer recoverInto(&err, "UnloadModel")
	if _, err := s.impl.UnloadModel(ctx, &UnloadModelRequest{Name: req.Name}); err != nil {
		return nil, toStatus(err)
	}
	return &pb.UnloadModelResponse{}, nil
}

func (s *grpcServer) Infer(ctx context.Context, req *pb.InferRequest) (_ *pb.InferResponse, err error) {
	defer recoverInto(&err, "Infer")
	in, err := tensorsFromPB(req.Inputs)
	if err != nil {
		return nil, toStatus(err)
	}
	if s.shm.claim(req) {
		// Busy until the answer is ready: a host that gave up on the call sees that it still runs.
		defer s.shm.finish(req)
	}
	r, err := s.impl.Infer(ctx, &InferRequest{Model: req.Model, Session: req.Session, Inputs: in, Outputs: req.Outputs, Params: req.Params})
	if err != nil {
		return nil, toStatus(err)
	}
	if r.Release != nil {
		defer r.Release()
	}
	out, err := tensorsToPB(r.Outputs)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "backend produced a malformed output: %v", err)
	}
	s.shm.writeOutputs(req, out)
	if r.Release != nil {
		// What did not go to shared memory is marshalled after this returns, when the backend
		// may already have reused the memory: those outputs travel in copies.
		for _, t := range out {
			if t.Data != nil {
				t.Data = bytes.Clone(t.Data)
			}
		}
	}
	return &pb.InferResponse{Outputs: out}, nil
}

func (s *grpcServer) OpenSession(ctx context.Context, req *pb.OpenSessionRequest) (_ *pb.OpenSessionResponse, err error) {
	defer recoverInto(&err, "OpenSession")
	ss, ok := s.impl.(Sessions)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "this backend has no sessions")
	}
	r, err := ss.OpenSession(ctx, &OpenSessionRequest{Model: req.Model, BatchSize: int(req.BatchSize), Params: req.Params})
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.OpenSessionResponse{Session: r.Session}, nil
}

func (s *grpcServer) CloseSession(ctx context.Context, req *pb.CloseSessionRequest) (_ *pb.CloseSessionResponse, err error) {
	defer recoverInto(&err, "CloseSession")
	ss, ok := s.impl.(Sessions)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "this backend has no sessions")
	}
	if _, err := ss.CloseSession(ctx, &CloseSessionRequest{Session: req.Session}); err != nil {
		return nil, toStatus(err)
	}
	return &pb.CloseSessionResponse{}, nil
}

func (s *grpcServer) Health(ctx context.Context, _ *pb.HealthRequest) (_ *pb.HealthResponse, err error) {
	defer recoverInto(&err, "Health")
	r, err := s.impl.Health(ctx, &HealthRequest{})
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.HealthResponse{Status: r.Status, Message: r.Message}, nil
}

func (s *grpcServer) Stats(ctx context.Context, _ *pb.StatsRequest) (_ *pb.StatsResponse, err error) {
	defer recoverInto(&err, "Stats")
	sr, ok := s.impl.(StatsReporter)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "this backend reports no stats")
	}
	r, err := sr.Stats(ctx, &StatsRequest{})
	if err != nil {
		return nil, toStatus(err)
	}
	return statsToPB(r), nil
}

// Client is the host's view of a backend over gRPC. It implements Backend, Sessions,
// Configurer and StatsReporter; a capability the backend lacks returns CodeUnimplemented.
// Errors are *Error values carrying the backend's Code.
type Client struct {
	client pb.BackendClient
	shm    *SharedMemory
}

// UseSharedMemory makes Infer lend a slot of m to each call for its large outputs (see
// SharedMemory). m must be the segment passed to this client's plugin process. Call it before
// the first Infer.
func (c *Client) UseSharedMemory(m *SharedMemory) { c.shm = m }

var callOpts = []grpc.CallOption{grpc.MaxCallRecvMsgSize(MaxMessageBytes), grpc.MaxCallSendMsgSize(MaxMessageBytes)}

// Describe implements Backend.
func (c *Client) Describe(ctx context.Context, _ *DescribeRequest) (*DescribeResponse, error) {
	r, err := c.client.Describe(ctx, &pb.DescribeRequest{}, callOpts...)
	if err != nil {
		return nil, fromStatus(err)
	}
	return describeFromPB(r), nil
}

// Configure implements Configurer.
func (c *Client) Configure(ctx context.Context, req *ConfigureRequest) (*ConfigureResponse, error) {
	if _, err := c.client.Configure(ctx, &pb.ConfigureRequest{ConfigJson: req.Config}, callOpts...); err != nil {
		return nil, fromStatus(err)
	}
	return &ConfigureResponse{}, nil
}

// LoadModel implements Backend.
func (c *Client) LoadModel(ctx context.Context, req *LoadModelRequest) (*LoadModelResponse, error) {
	r, err := c.client.LoadModel(ctx, &pb.LoadModelRequest{Name: req.Name, Path: req.Path, Task: req.Task, Options: req.Options}, callOpts...)
	if err != nil {
		return nil, fromStatus(err)
	}
	return &LoadModelResponse{Model: modelInfoFromPB(r.Model)}, nil
}

// UnloadModel implements Backend.
func (c *Client) UnloadModel(ctx context.Context, req *UnloadModelRequest) (*UnloadModelResponse, error) {
	if _, err := c.client.UnloadModel(ctx, &pb.UnloadModelRequest{Name: req.Name}, callOpts...); err != nil {
		return nil, fromStatus(err)
	}
	return &UnloadModelResponse{}, nil
}

// Infer implements Backend. Inputs are validated before anything is sent.
func (c *Client) Infer(ctx context.Context, req *InferRequest) (*InferResponse, error) {
	in, err := tensorsToPB(req.Inputs)
	if err != nil {
		return nil, err
	}
	preq := &pb.InferRequest{Model: req.Model, Session: req.Session, Inputs: in, Outputs: req.Outputs, Params: req.Params}
	slot, lent := -1, false
	if c.shm != nil {
		var ticket uint64
		if slot, ticket, lent = c.shm.lend(); lent {
			defer c.shm.giveBack(slot, ticket)
			preq.ShmOffset, preq.ShmSize, preq.ShmTicket = c.shm.offset(slot), uint64(c.shm.slotBytes), ticket
		}
	}
	r, err := c.client.Infer(ctx, preq, callOpts...)
	if err != nil {
		if lent && ctx.Err() != nil {
			// The caller gave up, but the plugin may still be computing: return once it has
			// stopped (it sees the same cancellation), so that whoever limits concurrent calls
			// counts this one until its memory and cores are free again.
			c.shm.awaitDone(slot, preq.ShmTicket, abandonedDeadline(ctx))
		}
		return nil, fromStatus(err)
	}
	viaShm := int64(0)
	for name, t := range r.Outputs {
		if t == nil || !t.InShm {
			continue
		}
		if !lent {
			return nil, fmt.Errorf("backend returned a malformed output: %w", InvalidArgument("output %q is in shared memory, but this call lent none", name))
		}
		data, err := c.shm.outputFromShm(name, t, slot, req.OutputBuffers[name])
		if err != nil {
			return nil, fmt.Errorf("backend returned a malformed output: %w", err)
		}
		t.Data, t.InShm = data, false
		viaShm += int64(len(data))
	}
	out, err := tensorsFromPB(r.Outputs)
	if err != nil {
		return nil, fmt.Errorf("backend returned a malformed output: %w", err)
	}
	if viaShm > 0 {
		c.shm.calls.Add(1)
		c.shm.bytes.Add(viaShm)
	}
	return &InferResponse{Outputs: out}, nil
}

// How long Infer waits for the plugin to stop a call whose context ended: until the call's own
// deadline (the plugin sees it too) plus AbandonedGrace, or MaxAbandonedWait when the context
// had no deadline. A backend that checks its context stops long before.
const (
	AbandonedGrace   = 5 * time.Second
	MaxAbandonedWait = time.Minute
)

func abandonedDeadline(ctx context.Context) time.Time {
	now := time.Now()
	if d, ok := ctx.Deadline(); ok {
		if d.Before(now) {
			d = now
		}
		return d.Add(AbandonedGrace)
	}
	return now.Add(MaxAbandonedWait)
}

// OpenSession implements Sessions.
func (c *Client) OpenSession(ctx context.Context, req *OpenSessionRequest) (*OpenSessionResponse, error) {
	r, err := c.client.OpenSession(ctx, &pb.OpenSessionRequest{Model: req.Model, BatchSize: int32(req.BatchSize), Params: req.Params}, callOpts...)
	if err != nil {
		return nil, fromStatus(err)
	}
	return &OpenSessionResponse{Session: r.Session}, nil
}

// CloseSession implements Sessions.
func (c *Client) CloseSession(ctx context.Context, req *CloseSessionRequest) (*CloseSessionResponse, error) {
	if _, err := c.client.CloseSession(ctx, &pb.CloseSessionRequest{Session: req.Session}, callOpts...); err != nil {
		return nil, fromStatus(err)
	}
	return &CloseSessionResponse{}, nil
}

// Health implements Backend.
func (c *Client) Health(ctx context.Context, _ *HealthRequest) (*HealthResponse, error) {
	r, err := c.client.Health(ctx, &pb.HealthRequest{}, callOpts...)
	if err != nil {
		return nil, fromStatus(err)
	}
	return &HealthResponse{Status: r.Status, Message: r.Message}, nil
}

// Stats implements StatsReporter.
func (c *Client) Stats(ctx context.Context, _ *StatsRequest) (*StatsResponse, error) {
	r, err := c.client.Stats(ctx, &pb.StatsRequest{}, callOpts...)
	if err != nil {
		return nil, fromStatus(err)
	}
	return statsFromPB(r), nil
}

func (s *grpcServer) Step(ctx context.Context, req *pb.StepRequest) (_ *pb.StepResponse, err error) {
	defer recoverInto(&err, "Step")
	st, ok := s.impl.(Stepper)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "this backend has no batched Step")
	}
	sreq := &StepRequest{Model: req.Model, Items: make([]StepItem, len(req.Items))}
	for i, it := range req.Items {
		if it == nil {
			return nil, status.Errorf(codes.InvalidArgument, "step: item %d is missing", i)
		}
		sreq.Items[i] = StepItem{Session: it.Session, TokenIDs: it.TokenIds}
	}
	if err := ValidateStep(sreq); err != nil {
		return nil, toStatus(err)
	}
	r, err := st.Step(ctx, sreq)
	if err != nil {
		return nil, toStatus(err)
	}
	if r.Logits == nil {
		return nil, status.Error(codes.Internal, "backend produced no logits for a step")
	}
	if err := r.Logits.Validate(); err != nil {
		return nil, status.Errorf(codes.Internal, "backend produced malformed step logits: %v", err)
	}
	return &pb.StepResponse{Logits: tensorToPB(r.Logits)}, nil
}

// Step implements Stepper. Call it only on a backend whose Describe lists CapabilityStep; it
// checks that the logits are float32 (len(Items), V).
func (c *Client) Step(ctx context.Context, req *StepRequest) (*StepResponse, error) {
	if err := ValidateStep(req); err != nil {
		return nil, err
	}
	preq := &pb.StepRequest{Model: req.Model, Items: make([]*pb.StepItem, len(req.Items))}
	for i, it := range req.Items {
		preq.Items[i] = &pb.StepItem{Session: it.Session, TokenIds: it.TokenIDs}
	}
	r, err := c.client.Step(ctx, preq, callOpts...)
	if err != nil {
		return nil, fromStatus(err)
	}
	lt, err := tensorFromPB("logits", r.Logits)
	if err != nil {
		return nil, fmt.Errorf("backend returned malformed step logits: %w", err)
	}
	if lt.DType != Float32 || len(lt.Shape) != 2 || lt.Shape[0] != int64(len(req.Items)) {
		return nil, fmt.Errorf("backend returned step logits %s%v for %d items, want float32 (%d, V)", lt.DType, lt.Shape, len(req.Items), len(req.Items))
	}
	return &StepResponse{Logits: lt}, nil
}
