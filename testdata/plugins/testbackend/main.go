// Command testbackend is a small but real modelrt backend used by the host's tests and by
// `modelrt plugins` demos. It is built only on package sdk.
//
// Models: any directory loads; the model name chooses the behaviour of Infer:
//
//	echo    outputs = inputs
//	logits  output "logits" float32 (1, V) with V from params["vocab"] (default 50257)
//	counter a session-scoped counter: each call adds the sum of "x" (int64) to the session
//
// Params (any model): "action" = "hang" blocks until the call is cancelled; "panic" panics;
// "crash" kills the process with SIGKILL. A model loaded with option crash_if_exists=FILE kills
// the process while loading whenever FILE exists (a backend that keeps crashing on restart).
package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"runtime"
	"strconv"
	"sync"
	"syscall"

	"github.com/modelrt/modelrt/sdk"
)

type backend struct {
	mu       sync.Mutex
	models   map[string]sdk.LoadModelRequest
	sessions map[string]int64
	next     int
	config   []byte
	row      []float32
}

func (b *backend) Describe(ctx context.Context, _ *sdk.DescribeRequest) (*sdk.DescribeResponse, error) {
	return &sdk.DescribeResponse{
		Name: "testbackend", Version: "0.1.0", Description: "test backend for the host's tests",
		Tasks: []string{sdk.TaskGraph}, Formats: []string{"any"},
		ConfigSchema: sdk.ConfigSchema{Attributes: []sdk.ConfigAttribute{
			{Name: "greeting", Type: "string", Description: "echoed by the 'config' model"},
			{Name: "threads", Type: "number"},
		}},
	}, nil
}

func (b *backend) Configure(ctx context.Context, req *sdk.ConfigureRequest) (*sdk.ConfigureResponse, error) {
	b.mu.Lock()
	b.config = append([]byte(nil), req.Config...)
	b.mu.Unlock()
	return &sdk.ConfigureResponse{}, nil
}

func (b *backend) LoadModel(ctx context.Context, req *sdk.LoadModelRequest) (*sdk.LoadModelResponse, error) {
	if _, err := os.Stat(req.Path); err != nil {
		return nil, sdk.NotFound("model %q: %v", req.Name, err)
	}
	if f := req.Options["crash_if_exists"]; f != "" {
		if _, err := os.Stat(f); err == nil {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}
	}
	b.mu.Lock()
	b.models[req.Name] = *req
	b.mu.Unlock()
	return &sdk.LoadModelResponse{Model: sdk.ModelInfo{Name: req.Name, Task: sdk.TaskGraph, Format: "any"}}, nil
}

func (b *backend) UnloadModel(ctx context.Context, req *sdk.UnloadModelRequest) (*sdk.UnloadModelResponse, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.models[req.Name]; !ok {
		return nil, sdk.NotFound("model %q is not loaded", req.Name)
	}
	delete(b.models, req.Name)
	return &sdk.UnloadModelResponse{}, nil
}

func (b *backend) Infer(ctx context.Context, req *sdk.InferRequest) (*sdk.InferResponse, error) {
	b.mu.Lock()
	_, ok := b.models[req.Model]
	b.mu.Unlock()
	if !ok {
		return nil, sdk.NotFound("model %q is not loaded", req.Model)
	}
	switch req.Params["action"] {
	case "hang":
		<-ctx.Done()
		return nil, ctx.Err()
	case "panic":
		panic("testbackend: asked to panic")
	case "crash":
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
	}
	switch req.Model {
	case "echo":
		return &sdk.InferResponse{Outputs: req.Inputs}, nil
	case "logits":
		v := 50257
		if s := req.Params["vocab"]; s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n <= 0 {
				return nil, sdk.InvalidArgument("params.vocab: want a positive integer, got %q", s)
			}
			v = n
		}
		return &sdk.InferResponse{Outputs: map[string]*sdk.Tensor{"logits": sdk.FromFloat32([]int64{1, int64(v)}, b.logits(v))}}, nil
	case "counter":
		x, err := req.Inputs["x"].Int64s()
		if err != nil {
			return nil, err
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		cur, ok := b.sessions[req.Session]
		if !ok {
			return nil, sdk.NotFound("session %q", req.Session)
		}
		for _, v := range x {
			cur += v
		}
		b.sessions[req.Session] = cur
		return &sdk.InferResponse{Outputs: map[string]*sdk.Tensor{"total": sdk.FromInt64([]int64{1}, []int64{cur})}}, nil
	case "config":
		b.mu.Lock()
		defer b.mu.Unlock()
		return &sdk.InferResponse{Outputs: map[string]*sdk.Tensor{"config": {DType: sdk.Uint8, Shape: []int64{int64(len(b.config))}, Data: b.config}}}, nil
	}
	return nil, sdk.InvalidArgument("model %q has no behaviour", req.Model)
}

// logits returns a fixed logits row of length v, computed once: the benchmark measures the
// plugin boundary, not this.
func (b *backend) logits(v int) []float32 {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.row) != v {
		b.row = make([]float32, v)
		for i := range b.row {
			b.row[i] = float32(math.Sin(float64(i)))
		}
	}
	return b.row
}

func (b *backend) OpenSession(ctx context.Context, req *sdk.OpenSessionRequest) (*sdk.OpenSessionResponse, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.models[req.Model]; !ok {
		return nil, sdk.NotFound("model %q is not loaded", req.Model)
	}
	b.next++
	id := fmt.Sprintf("s%d", b.next)
	b.sessions[id] = 0
	return &sdk.OpenSessionResponse{Session: id}, nil
}

func (b *backend) CloseSession(ctx context.Context, req *sdk.CloseSessionRequest) (*sdk.CloseSessionResponse, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.sessions[req.Session]; !ok {
		return nil, sdk.NotFound("session %q", req.Session)
	}
	delete(b.sessions, req.Session)
	return &sdk.CloseSessionResponse{}, nil
}

func (b *backend) Health(ctx context.Context, _ *sdk.HealthRequest) (*sdk.HealthResponse, error) {
	return &sdk.HealthResponse{Status: "ok"}, nil
}

func (b *backend) Stats(ctx context.Context, _ *sdk.StatsRequest) (*sdk.StatsResponse, error) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.mu.Lock()
	defer b.mu.Unlock()
	s := &sdk.StatsResponse{OpenSessions: len(b.sessions), HeapBytes: int64(ms.HeapAlloc), Goroutines: int64(runtime.NumGoroutine())}
	for n, m := range b.models {
		s.Models = append(s.Models, sdk.ModelStats{Name: n, Task: m.Task})
	}
	return s, nil
}

func main() {
	sdk.Serve(&backend{models: map[string]sdk.LoadModelRequest{}, sessions: map[string]int64{}})
}
