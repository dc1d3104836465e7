package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/modelrt/modelrt/runtime/server/kservepb"
)

// TestServeGRPC: `modelrt serve --grpc-listen` answers v2 gRPC behind the token, keeps serving
// after a bad call, unloads and loads a model through the repository calls (logged), and stops
// cleanly on SIGTERM.
func TestServeGRPC(t *testing.T) {
	model, err := filepath.Abs("../../testdata/models/gpt2-tiny")
	if err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A free port: taken and given back (another process could take it between; unlikely).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	s := startServe(t, "--config", "../../examples/pipelines/complete-native/pipeline.hcl", "-var", "model_dir="+model,
		"--grpc-listen", addr, "--auth-token-file", tokenFile)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := kservepb.NewGRPCInferenceServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if r, err := c.ServerReady(ctx, &kservepb.ServerReadyRequest{}); err != nil || !r.Ready {
		t.Fatalf("ServerReady: %v %v\n%s", r, err, s.log())
	}
	infer := &kservepb.ModelInferRequest{ModelName: "gpt2", Inputs: []*kservepb.ModelInferRequest_InferInputTensor{{
		Name: "input_ids", Datatype: "INT64", Shape: []int64{1, 2}, Contents: &kservepb.InferTensorContents{Int64Contents: []int64{464, 3290}}}},
		Parameters: map[string]*kservepb.InferParameter{"logits": {ParameterChoice: &kservepb.InferParameter_StringParam{StringParam: "last"}}}}
	if _, err := c.ModelInfer(ctx, infer); status.Code(err) != codes.Unauthenticated {
		t.Errorf("without the token: %v, want Unauthenticated", err)
	}
	authed := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer s3cret")
	bad := &kservepb.ModelInferRequest{ModelName: "gpt2", Inputs: []*kservepb.ModelInferRequest_InferInputTensor{{
		Name: "input_ids", Datatype: "INT64", Shape: []int64{1, 3}, Contents: &kservepb.InferTensorContents{Int64Contents: []int64{464}}}}}
	if _, err := c.ModelInfer(authed, bad); status.Code(err) != codes.InvalidArgument {
		t.Errorf("a short tensor: %v, want InvalidArgument", err)
	}
	res, err := c.ModelInfer(authed, infer)
	if err != nil {
		t.Fatalf("ModelInfer: %v\n%s", err, s.log())
	}
	if len(res.Outputs) != 1 || res.Outputs[0].Name != "logits" || len(res.Outputs[0].Shape) != 3 || res.Outputs[0].Shape[1] != 1 {
		t.Errorf("ModelInfer = %v", res.Outputs)
	}
	// The repository extension: unload, an infer refused with the way to load, load, infer.
	if _, err := c.RepositoryModelUnload(authed, &kservepb.RepositoryModelUnloadRequest{ModelName: "gpt2"}); err != nil {
		t.Fatalf("RepositoryModelUnload: %v\n%s", err, s.log())
	}
	if _, err := c.ModelInfer(authed, infer); status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "/v2/repository/models/gpt2/load") {
		t.Errorf("infer on an unloaded model: %v, want FailedPrecondition naming the load", err)
	}
	if _, err := c.RepositoryModelLoad(authed, &kservepb.RepositoryModelLoadRequest{ModelName: "gpt2"}); err != nil {
		t.Fatalf("RepositoryModelLoad: %v\n%s", err, s.log())
	}
	if _, err := c.ModelInfer(authed, infer); err != nil {
		t.Errorf("infer after the load: %v", err)
	}
	if err := s.stop(t, syscall.SIGTERM); err != nil {
		t.Errorf("exit after SIGTERM: %v\n%s", err, s.log())
	}
	if log := s.log(); !strings.Contains(log, "method=ModelInfer") || !strings.Contains(log, "code=InvalidArgument") ||
		!strings.Contains(log, `msg="model unloaded" model=gpt2 backend=native reason=request`) ||
		!strings.Contains(log, `msg="model loaded" model=gpt2 backend=native reason=request`) {
		t.Errorf("the gRPC calls are not logged:\n%s", log)
	}
}
