package main

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"runtime"
	"slices"
	"strconv"
	"sync"

	"github.com/modelrt/modelrt/sdk"
)

// Version is reported by Describe.
const Version = "0.1.0"

// maxBatch bounds a session's rows.
const maxBatch = 1024

// backend implements sdk.Backend, sdk.Sessions, sdk.Configurer and sdk.StatsReporter.
type backend struct {
	mu          sync.Mutex
	models      map[string]*loaded
	sessions    map[string]*session
	next        int
	maxSessions int   // 0: no limit (config attribute max_sessions)
	maxBytes    int64 // logits one Infer may ask for (config attribute max_infer_bytes)
}

type loaded struct {
	name  string
	model *Model
}

// session is the state the host leaves in the backend between calls: per row, the last
// Order-1 real tokens, and the number of positions fed so far.
type session struct {
	mu    sync.Mutex // one call at a time per session
	model *loaded
	ctx   [][]int32
	pos   int
}

func newBackend() *backend {
	return &backend{models: map[string]*loaded{}, sessions: map[string]*session{}}
}

func (b *backend) Describe(context.Context, *sdk.DescribeRequest) (*sdk.DescribeResponse, error) {
	return &sdk.DescribeResponse{
		Name: "ngram", Version: Version,
		Description: "byte-level n-gram language model with add-k smoothing, trained at load time from corpus.txt",
		Tasks:       []string{sdk.TaskCausalLM},
		Formats:     []string{"corpus.txt"},
		ConfigSchema: sdk.ConfigSchema{Attributes: []sdk.ConfigAttribute{
			{Name: "max_sessions", Type: "number", Description: "open sessions at most (0 = no limit)"},
			{Name: "max_infer_bytes", Type: "number", Description: "logits one call may ask for, in bytes (default 2 GiB)"},
		}},
	}, nil
}

func (b *backend) Configure(_ context.Context, req *sdk.ConfigureRequest) (*sdk.ConfigureResponse, error) {
	var c struct {
		MaxSessions int `json:"max_sessions"`
		sdk.Limits      // max_infer_bytes
	}
	if len(req.Config) > 0 {
		if err := json.Unmarshal(req.Config, &c); err != nil {
			return nil, sdk.InvalidArgument("ngram config: %v", err)
		}
	}
	if c.MaxSessions < 0 {
		return nil, sdk.InvalidArgument("ngram config: max_sessions must be ≥ 0, got %d", c.MaxSessions)
	}
	if err := c.Limits.Check("ngram"); err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.maxSessions, b.maxBytes = c.MaxSessions, c.Limits.InferBytes()
	b.mu.Unlock()
	return &sdk.ConfigureResponse{}, nil
}

func (b *backend) LoadModel(ctx context.Context, req *sdk.LoadModelRequest) (*sdk.LoadModelResponse, error) {
	if req.Name == "" {
		return nil, sdk.InvalidArgument("load model: empty name")
	}
	if req.Task != "" && req.Task != sdk.TaskCausalLM {
		return nil, sdk.Unimplemented("load model %q: ngram serves only %s, not %q", req.Name, sdk.TaskCausalLM, req.Task)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m, err := Load(req.Path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, sdk.NotFound("load model %q: %v", req.Name, err)
	case err != nil:
		return nil, sdk.InvalidArgument("load model %q: %v", req.Name, err)
	}
	slog.Info("loaded n-gram model", "model", req.Name, "path", req.Path, "order", m.cfg.Order, "contexts", len(m.counts[len(m.counts)-1]))
	b.mu.Lock()
	if old := b.models[req.Name]; old != nil {
		b.dropSessionsLocked(old)
	}
	b.models[req.Name] = &loaded{name: req.Name, model: m}
	b.mu.Unlock()
	return &sdk.LoadModelResponse{Model: sdk.ModelInfo{
		Name: req.Name, Task: sdk.TaskCausalLM, Format: "corpus.txt",
		Inputs: []sdk.TensorSpec{
			{Name: "input_ids", DType: sdk.Int64, Shape: []int64{-1, -1}, DimNames: []string{"batch", "sequence"}},
			{Name: "attention_mask", DType: sdk.Int64, Shape: []int64{-1, -1}, DimNames: []string{"batch", "past+sequence"}},
		},
		Outputs: []sdk.TensorSpec{{Name: "logits", DType: sdk.Float32, Shape: []int64{-1, -1, VocabSize}, DimNames: []string{"batch", "sequence", "vocab"}}},
		// runtime/lm reads these three; generate stops at eos_token_id and n_positions.
		Metadata: map[string]string{
			"vocab_size":   strconv.Itoa(VocabSize),
			"eos_token_id": strconv.Itoa(EOS),
			"n_positions":  strconv.Itoa(m.cfg.NPositions),
			"order":        strconv.Itoa(m.cfg.Order),
		},
	}}, nil
}

func (b *backend) dropSessionsLocked(l *loaded) {
	for id, s := range b.sessions {
		if s.model == l {
			delete(b.sessions, id)
		}
	}
}

func (b *backend) UnloadModel(_ context.Context, req *sdk.UnloadModelRequest) (*sdk.UnloadModelResponse, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	l, ok := b.models[req.Name]
	if !ok {
		return nil, sdk.NotFound("model %q is not loaded", req.Name)
	}
	b.dropSessionsLocked(l)
	delete(b.models, req.Name)
	return &sdk.UnloadModelResponse{}, nil
}

func (b *backend) OpenSession(_ context.Context, req *sdk.OpenSessionRequest) (*sdk.OpenSessionResponse, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	l, ok := b.models[req.Model]
	if !ok {
		return nil, sdk.NotFound("model %q is not loaded", req.Model)
	}
	n := req.BatchSize
	if n == 0 {
		n = 1
	}
	if n < 0 || n > maxBatch {
		return nil, sdk.InvalidArgument("batch_size %d outside [1, %d]", req.BatchSize, maxBatch)
	}
	if b.maxSessions > 0 && len(b.sessions) >= b.maxSessions {
		return nil, sdk.ResourceExhausted("%d sessions are open (max_sessions)", len(b.sessions))
	}
	b.next++
	id := "ngram-" + strconv.Itoa(b.next)
	b.sessions[id] = &session{model: l, ctx: make([][]int32, n)}
	return &sdk.OpenSessionResponse{Session: id}, nil
}

func (b *backend) CloseSession(_ context.Context, req *sdk.CloseSessionRequest) (*sdk.CloseSessionResponse, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.sessions[req.Session]; !ok {
		return nil, sdk.NotFound("session %q is not open", req.Session)
	}
	delete(b.sessions, req.Session)
	return &sdk.CloseSessionResponse{}, nil
}

// Infer implements the causal-lm tensor contract: input_ids int64 (B,T), optional
// attention_mask (B,P+T) where P is what the session was fed before (0 without a session),
// → logits float32 (B,T,V), or (B,1,V) with params.logits = "last". Positions whose mask is 0
// are left padding: they do not enter the context, and their logits are those of the context
// so far (defined, but nothing should depend on them).
func (b *backend) Infer(ctx context.Context, req *sdk.InferRequest) (*sdk.InferResponse, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b.mu.Lock()
	l, ok := b.models[req.Model]
	var s *session
	if req.Session != "" {
		s = b.sessions[req.Session]
	}
	b.mu.Unlock()
	if !ok {
		return nil, sdk.NotFound("model %q is not loaded", req.Model)
	}
	if req.Session != "" && s == nil {
		return nil, sdk.NotFound("session %q is not open", req.Session)
	}
	if s != nil && s.model != l {
		return nil, sdk.InvalidArgument("session %q belongs to model %q, not %q", req.Session, s.model.name, l.name)
	}
	// sdk.CausalLMInputs checks the tensor contract: input_ids (B,T) with B, T > 0, the rank
	// of attention_mask, params.logits; its errors are InvalidArgument already.
	in, err := sdk.CausalLMInputs(req)
	if err != nil {
		return nil, err
	}
	ids, mask, B, T := in.IDs, in.Mask, in.Batch, in.Len
	for i, id := range ids {
		if id < 0 || id >= VocabSize {
			return nil, sdk.InvalidArgument("causal-lm: input_ids[%d] = %d outside [0, %d)", i, id, VocabSize)
		}
	}
	if s == nil {
		s = &session{model: l, ctx: make([][]int32, B)} // a throw-away session: no state kept
	} else {
		s.mu.Lock()
		defer s.mu.Unlock()
	}
	if len(s.ctx) != B {
		return nil, sdk.InvalidArgument("session %q was opened for batch %d, input_ids has batch %d", req.Session, len(s.ctx), B)
	}
	P := s.pos
	if P+T > l.model.cfg.NPositions {
		return nil, sdk.InvalidArgument("input_ids: %d positions exceed the context length n_positions = %d", P+T, l.model.cfg.NPositions)
	}
	if mask != nil && len(mask) != B*(P+T) {
		return nil, sdk.InvalidArgument("attention_mask has %d elements, want (batch, past + sequence) = (%d, %d)", len(mask), B, P+T)
	}
	// No request may take the process's memory: check the logits' size before allocating them.
	if err := sdk.CheckCausalLM(in, P, VocabSize, l.model.cfg.NPositions, b.inferBytes()); err != nil {
		return nil, err
	}
	last, outT := in.LastOnly, in.OutLen()
	logits := make([]float32, B*outT*VocabSize)
	// Work on copies so that a cancelled call leaves the session as it was.
	next := make([][]int32, B)
	for r := range B {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		c := slices.Clone(s.ctx[r])
		for t := range T {
			if mask == nil || mask[r*(P+T)+P+t] != 0 {
				c = l.model.push(c, int32(ids[r*T+t]))
			}
			if !last || t == T-1 {
				o := r*outT + min(t, outT-1)
				l.model.Logits(c, logits[o*VocabSize:(o+1)*VocabSize])
			}
		}
		next[r] = c
	}
	if req.Session != "" {
		s.ctx, s.pos = next, P+T
	}
	return &sdk.InferResponse{Outputs: map[string]*sdk.Tensor{
		"logits": sdk.FromFloat32([]int64{int64(B), int64(outT), VocabSize}, logits),
	}}, nil
}

func (b *backend) inferBytes() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.maxBytes > 0 {
		return b.maxBytes
	}
	return sdk.DefaultMaxInferBytes
}

func (b *backend) Health(context.Context, *sdk.HealthRequest) (*sdk.HealthResponse, error) {
	return &sdk.HealthResponse{Status: "ok"}, nil
}

// Stats reports the live heap after a collection, so that the host (and the contract check
// "unload frees memory") sees what an unloaded model leaves behind.
func (b *backend) Stats(context.Context, *sdk.StatsRequest) (*sdk.StatsResponse, error) {
	runtime.GC()
	b.mu.Lock()
	defer b.mu.Unlock()
	st := &sdk.StatsResponse{OpenSessions: len(b.sessions)}
	sdk.ProcessStats(st) // HeapBytes, RSSBytes, Goroutines
	for _, l := range b.models {
		n := 0
		for _, s := range b.sessions {
			if s.model == l {
				n++
			}
		}
		st.Models = append(st.Models, sdk.ModelStats{Name: l.name, Task: sdk.TaskCausalLM, WeightBytes: l.model.bytes, OpenSessions: n})
	}
	return st, nil
}
