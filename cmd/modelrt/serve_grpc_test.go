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
// after a bad call, and stops cleanly on SIGTERM.
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
	if err := s.stop(t, syscall.SIGTERM); err != nil {
		t.Errorf("exit after SIGTERM: %v\n%s", err, s.log())
	}
	if log := s.log(); !strings.Contains(log, "method=ModelInfer") || !strings.Contains(log, "code=InvalidArgument") {
		t.Errorf("the gRPC calls are not logged:\n%s", log)
	}
}
