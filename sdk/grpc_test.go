package sdk

import (
	"context"
	"strings"
	"testing"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/modelrt/modelrt/sdk/internal/pb"
)

// recordingBackend is a minimal Backend that records whether Infer was reached.
type recordingBackend struct{ inferCalls int }

func (b *recordingBackend) Describe(context.Context, *DescribeRequest) (*DescribeResponse, error) {
	return &DescribeResponse{Name: "rec", Tasks: []string{TaskGraph}}, nil
}
func (b *recordingBackend) LoadModel(_ context.Context, r *LoadModelRequest) (*LoadModelResponse, error) {
	return &LoadModelResponse{Model: ModelInfo{Name: r.Name}}, nil
}
func (b *recordingBackend) UnloadModel(context.Context, *UnloadModelRequest) (*UnloadModelResponse, error) {
	return nil, NotFound("no such model")
}
func (b *recordingBackend) Infer(_ context.Context, r *InferRequest) (*InferResponse, error) {
	b.inferCalls++
	if r.Params["panic"] != "" {
		panic("boom")
	}
	if r.Params["bad-output"] != "" {
		return &InferResponse{Outputs: map[string]*Tensor{"y": {DType: Float32, Shape: []int64{4}, Data: make([]byte, 3)}}}, nil
	}
	return &InferResponse{Outputs: r.Inputs}, nil
}
func (b *recordingBackend) Health(context.Context, *HealthRequest) (*HealthResponse, error) {
	return &HealthResponse{Status: "ok"}, nil
}

func connect(t *testing.T, impl Backend) (*Client, pb.BackendClient) {
	t.Helper()
	conn, _ := plugin.TestPluginGRPCConn(t, false, ServerPlugins(impl)[ProtocolVersion])
	t.Cleanup(func() { conn.Close() })
	raw, err := conn.Dispense(PluginName)
	if err != nil {
		t.Fatal(err)
	}
	return raw.(*Client), pb.NewBackendClient(conn.Conn)
}

func TestMalformedTensorsRefusedByServer(t *testing.T) {
	b := &recordingBackend{}
	_, raw := connect(t, b)
	for name, tt := range map[string]*pb.Tensor{
		"size mismatch": {Dtype: "float32", Shape: []int64{3}, Data: make([]byte, 8)},
		"unknown dtype": {Dtype: "complex64", Shape: []int64{1}, Data: make([]byte, 8)},
		"absurd shape":  {Dtype: "float32", Shape: []int64{1 << 40, 1 << 40}},
		"negative dim":  {Dtype: "int64", Shape: []int64{-4}},
	} {
		_, err := raw.Infer(context.Background(), &pb.InferRequest{Model: "m", Inputs: map[string]*pb.Tensor{"x": tt}})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), `"x"`) {
			t.Errorf("%s: err = %v, want InvalidArgument naming the tensor", name, err)
		}
	}
	if b.inferCalls != 0 {
		t.Errorf("the backend saw %d malformed requests; want them refused before it", b.inferCalls)
	}
}

func TestErrorsAndPanicsCrossTheWire(t *testing.T) {
	c, _ := connect(t, &recordingBackend{})
	ctx := context.Background()
	if _, err := c.UnloadModel(ctx, &UnloadModelRequest{Name: "x"}); CodeOf(err) != CodeNotFound || !strings.Contains(err.Error(), "no such model") {
		t.Errorf("UnloadModel: err = %v, want NotFound with the backend's message", err)
	}
	_, err := c.Infer(ctx, &InferRequest{Model: "m", Params: map[string]string{"panic": "1"}})
	if CodeOf(err) != CodeInternal || !strings.Contains(err.Error(), "boom") {
		t.Errorf("panic: err = %v, want Internal", err)
	}
	_, err = c.Infer(ctx, &InferRequest{Model: "m", Params: map[string]string{"bad-output": "1"}})
	if CodeOf(err) != CodeInternal {
		t.Errorf("malformed output: err = %v, want Internal", err)
	}
	if _, err := c.OpenSession(ctx, &OpenSessionRequest{Model: "m"}); CodeOf(err) != CodeUnimplemented {
		t.Errorf("OpenSession on a backend without sessions: err = %v, want Unimplemented", err)
	}
	if _, err := c.Stats(ctx, &StatsRequest{}); CodeOf(err) != CodeUnimplemented {
		t.Errorf("Stats: err = %v, want Unimplemented", err)
	}
	d, err := c.Describe(ctx, &DescribeRequest{})
	if err != nil || d.ProtocolVersion != ProtocolVersion {
		t.Errorf("Describe = %+v, %v; want protocol version filled in", d, err)
	}
	in := FromFloat32([]int64{2, 2}, []float32{1, 2, 3, 4})
	r, err := c.Infer(ctx, &InferRequest{Model: "m", Inputs: map[string]*Tensor{"x": in}})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := r.Outputs["x"].Float32s()
	if len(got) != 4 || got[3] != 4 {
		t.Errorf("round trip = %v", got)
	}
}
