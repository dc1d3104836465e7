package server

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/modelrt/modelrt/runtime/server/kservepb"
)

// grpcTol is how far a gRPC output element may be from the REST one: both are the same float32
// (REST prints it in JSON with enough digits to round-trip), so only formatting noise.
const grpcTol = 1e-6

// startGRPC serves s's v2 gRPC service on a loopback port and returns a client of it.
func startGRPC(t *testing.T, s *Server) kservepb.GRPCInferenceServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(startGRPCAddr(t, s), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20), grpc.MaxCallSendMsgSize(256<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return kservepb.NewGRPCInferenceServiceClient(conn)
}

// startGRPCAddr serves s's v2 gRPC service on a loopback port and returns its address.
func startGRPCAddr(t *testing.T, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := s.GRPCServer()
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	return ln.Addr().String()
}

func withToken(tok string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
}

func fp32Raw(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[i*4:], math.Float32bits(f))
	}
	return b
}

// TestGRPCInfer: the v2 gRPC service answers what REST answers, typed or raw, behind the same
// token; metadata and readiness are there.
func TestGRPCInfer(t *testing.T) {
	s, ts := newTestServer(t, Options{AuthToken: "s3cret"})
	c := startGRPC(t, s)
	ctx := withToken("s3cret")

	if r, err := c.ServerLive(context.Background(), &kservepb.ServerLiveRequest{}); err != nil || !r.Live {
		t.Fatalf("ServerLive without a token: %v %v", r, err)
	}
	if r, err := c.ServerReady(context.Background(), &kservepb.ServerReadyRequest{}); err != nil || !r.Ready {
		t.Fatalf("ServerReady: %v %v", r, err)
	}
	if _, err := c.ModelMetadata(context.Background(), &kservepb.ModelMetadataRequest{Name: "gpt2"}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("ModelMetadata without a token: %v, want Unauthenticated", err)
	}
	if _, err := c.ModelMetadata(withToken("wrong"), &kservepb.ModelMetadataRequest{Name: "gpt2"}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("ModelMetadata with a wrong token: %v, want Unauthenticated", err)
	}
	md, err := c.ModelMetadata(ctx, &kservepb.ModelMetadataRequest{Name: "gpt2"})
	if err != nil || md.Name != "gpt2" || len(md.Inputs) == 0 || md.Inputs[0].Name != "input_ids" || md.Inputs[0].Datatype != "INT64" {
		t.Fatalf("ModelMetadata gpt2 = %v, %v", md, err)
	}
	if r, err := c.ModelReady(ctx, &kservepb.ModelReadyRequest{Name: "vae", Version: "1"}); err != nil || !r.Ready {
		t.Fatalf("ModelReady vae: %v %v", r, err)
	}
	if sm, err := c.ServerMetadata(ctx, &kservepb.ServerMetadataRequest{}); err != nil || sm.Name != "modelrt" {
		t.Fatalf("ServerMetadata: %v %v", sm, err)
	}

	// The vae decode over gRPC (typed contents) and REST give the same image.
	latent := make([]float32, 1*4*2*3)
	for i := range latent {
		latent[i] = float32(i%5)/5 - 0.4
	}
	res, err := c.ModelInfer(ctx, &kservepb.ModelInferRequest{ModelName: "vae", Id: "g1", Inputs: []*kservepb.ModelInferRequest_InferInputTensor{{
		Name: "latent", Datatype: "FP32", Shape: []int64{1, 4, 2, 3}, Contents: &kservepb.InferTensorContents{Fp32Contents: latent},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Id != "g1" || len(res.Outputs) != 1 || res.Outputs[0].Name != "image" || fmt.Sprint(res.Outputs[0].Shape) != "[1 3 4 6]" || len(res.RawOutputContents[0]) != 72*4 {
		t.Fatalf("vae infer = %v", res)
	}
	req := map[string]any{"inputs": []map[string]any{{"name": "latent", "datatype": "FP32", "shape": []int{1, 4, 2, 3}, "data": latent}}}
	st, _, body := call(t, ts.Client(), "POST", ts.URL+"/v2/models/vae/infer", req, "Authorization", "Bearer s3cret")
	if st != 200 {
		t.Fatalf("REST: %d %s", st, body)
	}
	var rest struct{ Outputs []struct{ Data []float32 } }
	if err := json.Unmarshal(body, &rest); err != nil {
		t.Fatal(err)
	}
	for i, want := range rest.Outputs[0].Data {
		got := math.Float32frombits(binary.LittleEndian.Uint32(res.RawOutputContents[0][i*4:]))
		if math.Abs(float64(got-want)) > grpcTol {
			t.Fatalf("element %d: gRPC %v, REST %v", i, got, want)
		}
	}

	// A causal-lm forward pass with raw contents and a string parameter.
	ids := make([]byte, 4*8)
	for i, v := range []int64{464, 3290, 11, 13} {
		binary.LittleEndian.PutUint64(ids[i*8:], uint64(v))
	}
	res, err = c.ModelInfer(ctx, &kservepb.ModelInferRequest{ModelName: "gpt2",
		Parameters:       map[string]*kservepb.InferParameter{"logits": {ParameterChoice: &kservepb.InferParameter_StringParam{StringParam: "last"}}},
		Inputs:           []*kservepb.ModelInferRequest_InferInputTensor{{Name: "input_ids", Datatype: "INT64", Shape: []int64{2, 2}}},
		RawInputContents: [][]byte{ids}})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(res.Outputs[0].Shape) != "[2 1 50257]" || len(res.RawOutputContents[0]) != 2*50257*4 {
		t.Fatalf("gpt2 infer: %v %d bytes", res.Outputs[0], len(res.RawOutputContents[0]))
	}

	// Counted like REST.
	_, _, metrics := call(t, ts.Client(), "GET", ts.URL+"/metrics", nil, "Authorization", "Bearer s3cret")
	if !strings.Contains(string(metrics), `modelrt_requests_total{api="grpc_infer",code="200",target="gpt2"} 1`) {
		t.Errorf("metrics lack the gRPC infer: %s", grepLines(string(metrics), "grpc_infer"))
	}
}

// TestGRPCBadInput: shapes that disagree with their data, over-large declarations and
// messages, unknown models and mixed forms get INVALID_ARGUMENT, NOT_FOUND or
// RESOURCE_EXHAUSTED with a message naming the input; the server keeps serving.
func TestGRPCBadInput(t *testing.T) {
	s, _ := newTestServer(t, Options{MaxBodyBytes: 1 << 20})
	c := startGRPC(t, s)
	ctx := context.Background()
	fp := func(shape []int64, v []float32) *kservepb.ModelInferRequest {
		return &kservepb.ModelInferRequest{ModelName: "vae", Inputs: []*kservepb.ModelInferRequest_InferInputTensor{{
			Name: "latent", Datatype: "FP32", Shape: shape, Contents: &kservepb.InferTensorContents{Fp32Contents: v}}}}
	}
	raw := func(shape []int64, b []byte) *kservepb.ModelInferRequest {
		return &kservepb.ModelInferRequest{ModelName: "vae", Inputs: []*kservepb.ModelInferRequest_InferInputTensor{{
			Name: "latent", Datatype: "FP32", Shape: shape}}, RawInputContents: [][]byte{b}}
	}
	good := make([]float32, 24)
	mixed := raw([]int64{1, 4, 2, 3}, fp32Raw(good))
	mixed.Inputs[0].Contents = &kservepb.InferTensorContents{Fp32Contents: good}
	wrongField := fp([]int64{1, 4, 2, 3}, nil)
	wrongField.Inputs[0].Contents.Int64Contents = make([]int64, 24)
	for _, tc := range []struct {
		name string
		req  *kservepb.ModelInferRequest
		code codes.Code
		msg  string
	}{
		{"short typed", fp([]int64{1, 4, 2, 3}, good[:23]), codes.InvalidArgument, "needs 24 elements, contents.fp32_contents has 23"},
		{"short raw", raw([]int64{1, 4, 2, 3}, fp32Raw(good)[:95]), codes.InvalidArgument, "needs 96 bytes, has 95"},
		{"huge shape", raw([]int64{1 << 20, 1 << 20, 1 << 20, 4}, nil), codes.InvalidArgument, `input "latent": shape`},
		{"negative dim", fp([]int64{1, -4, 2, 3}, good), codes.InvalidArgument, "negative"},
		{"NaN", fp([]int64{1, 4, 2, 3}, append([]float32{float32(math.NaN())}, good[1:]...)), codes.InvalidArgument, "not finite"},
		{"both forms", mixed, codes.InvalidArgument, "use one"},
		{"wrong field", wrongField, codes.InvalidArgument, "contents.int64_contents: datatype FP32 takes contents.fp32_contents"},
		{"raw count", &kservepb.ModelInferRequest{ModelName: "vae", Inputs: raw([]int64{1}, nil).Inputs, RawInputContents: [][]byte{{}, {}}}, codes.InvalidArgument, "2 entries for 1 inputs"},
		{"no inputs", &kservepb.ModelInferRequest{ModelName: "vae"}, codes.InvalidArgument, "at least one tensor"},
		{"unknown input", &kservepb.ModelInferRequest{ModelName: "gpt2", Inputs: []*kservepb.ModelInferRequest_InferInputTensor{{Name: "pixels", Datatype: "INT64", Shape: []int64{1}}}}, codes.InvalidArgument, "takes no such input"},
		{"datatype", &kservepb.ModelInferRequest{ModelName: "vae", Inputs: []*kservepb.ModelInferRequest_InferInputTensor{{Name: "latent", Datatype: "FP64", Shape: []int64{1}}}}, codes.InvalidArgument, `datatype "FP64"`},
		{"unknown model", fp([]int64{1}, good[:1]), codes.NotFound, "not served here"},
		{"unknown version", &kservepb.ModelInferRequest{ModelName: "vae", ModelVersion: "2"}, codes.NotFound, "no version"},
		{"over the body limit", raw([]int64{1, 4, 256, 256}, make([]byte, 4*4*256*256)), codes.ResourceExhausted, "larger than max"},
	} {
		if tc.name == "unknown model" {
			tc.req.ModelName = "nope"
		}
		_, err := c.ModelInfer(ctx, tc.req)
		if status.Code(err) != tc.code || !strings.Contains(status.Convert(err).Message(), tc.msg) {
			t.Errorf("%s: %v, want %v with %q", tc.name, err, tc.code, tc.msg)
		}
	}
	if _, err := c.ModelInfer(ctx, fp([]int64{1, 4, 2, 3}, good)); err != nil {
		t.Fatalf("a good request after the bad ones: %v", err)
	}
}

// FuzzGRPCTensor: any ModelInferRequest decodes to tensors that validate, or to a 400; never a
// panic.
func FuzzGRPCTensor(f *testing.F) {
	seed := func(r *kservepb.ModelInferRequest) {
		b, err := proto.Marshal(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	seed(&kservepb.ModelInferRequest{Inputs: []*kservepb.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "UINT8", Shape: []int64{2}, Contents: &kservepb.InferTensorContents{UintContents: []uint32{1, 300}}}}})
	seed(&kservepb.ModelInferRequest{Inputs: []*kservepb.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "BOOL", Shape: []int64{1, 2}}}, RawInputContents: [][]byte{{0, 2}}})
	seed(&kservepb.ModelInferRequest{Inputs: []*kservepb.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "FP16", Shape: []int64{1}}}, RawInputContents: [][]byte{{0, 60}}})
	f.Fuzz(func(t *testing.T, b []byte) {
		var req kservepb.ModelInferRequest
		if proto.Unmarshal(b, &req) != nil {
			return
		}
		if _, err := grpcRequest(&req); err != nil {
			return
		}
		for i := range req.Inputs {
			tensor, err := grpcTensor(&req, i)
			if err != nil {
				if classify(err).status != 400 {
					t.Fatalf("input %d: %v is not a 400", i, err)
				}
				continue
			}
			if err := tensor.Validate(); err != nil {
				t.Fatalf("input %d decoded to an invalid tensor: %v", i, err)
			}
		}
	})
}
