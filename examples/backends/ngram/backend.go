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

// backend implements sdk.Backend, sdk.Sessions, sdk.Configurer and sdk.StatsReporter. The
// SDK's model table keeps the loaded models and their sessions: it answers NotFound for unknown
// names, closes a model's sessions when the model is unloaded or replaced, and implements
// UnloadModel and CloseSession. What is left here is the n-gram model's own behaviour.
type backend struct {
	*sdk.ModelTable[*Model, *session]
	mu       sync.Mutex // guards maxBytes
	maxBytes int64      // logits one Infer may ask for (config attribute max_infer_bytes)
}

// session is the state the host leaves in the backend between calls: per row, the last
// Order-1 real tokens, and the number of positions fed so far.
type session struct {
	mu  sync.Mutex // one call at a time per session
	ctx [][]int32
	pos int
}

func newBackend() *backend {
	return &backend{ModelTable: sdk.NewModelTable[*Model, *session]("ngram", nil, nil)}
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
	b.SetMaxSessions(c.MaxSessions)
	b.mu.Lock()
	b.maxBytes = c.Limits.InferBytes()
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
	b.Put(req.Name, m) // replaces a model of that name, closing its sessions
	// The facts runtime/lm reads: generate stops at EOS and at the context length.
	meta := sdk.LMFacts{VocabSize: VocabSize, Context: m.cfg.NPositions, EOS: EOS, MaxInferBytes: b.inferBytes()}.Metadata()
	meta["order"] = strconv.Itoa(m.cfg.Order) // beyond the facts: shown by the server's model metadata
	return &sdk.LoadModelResponse{Model: sdk.ModelInfo{
		Name: req.Name, Task: sdk.TaskCausalLM, Format: "corpus.txt",
		Inputs: []sdk.TensorSpec{
			{Name: "input_ids", DType: sdk.Int64, Shape: []int64{-1, -1}, DimNames: []string{"batch", "sequence"}},
			{Name: "attention_mask", DType: sdk.Int64, Shape: []int64{-1, -1}, DimNames: []string{"batch", "past+sequence"}},
		},
		Outputs:  []sdk.TensorSpec{{Name: "logits", DType: sdk.Float32, Shape: []int64{-1, -1, VocabSize}, DimNames: []string{"batch", "sequence", "vocab"}}},
		Metadata: meta,
	}}, nil
}

// OpenSession makes the state of a session: an empty context per row. The table checks the
// model name, the batch size and max_sessions.
func (b *backend) OpenSession(_ context.Context, req *sdk.OpenSessionRequest) (*sdk.OpenSessionResponse, error) {
	return b.Open(req, func(_ *Model, batch int) (*session, error) {
		return &session{ctx: make([][]int32, batch)}, nil
	})
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
	model, err := b.Get(req.Model)
	if err != nil {
		return nil, err
	}
	var s *session
	if req.Session != "" {
		if s, err = b.Session(req.Session, req.Model); err != nil {
			return nil, err
		}
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
		s = &session{ctx: make([][]int32, B)} // a throw-away session: no state kept
	} else {
		s.mu.Lock()
		defer s.mu.Unlock()
	}
	if len(s.ctx) != B {
		return nil, sdk.InvalidArgument("session %q was opened for batch %d, input_ids has batch %d", req.Session, len(s.ctx), B)
	}
	P := s.pos
	if P+T > model.cfg.NPositions {
		return nil, sdk.InvalidArgument("input_ids: %d positions exceed the context length n_positions = %d", P+T, model.cfg.NPositions)
	}
	if mask != nil && len(mask) != B*(P+T) {
		return nil, sdk.InvalidArgument("attention_mask has %d elements, want (batch, past + sequence) = (%d, %d)", len(mask), B, P+T)
	}
	// No request may take the process's memory: check the logits' size before allocating them.
	if err := sdk.CheckCausalLM(in, P, VocabSize, model.cfg.NPositions, b.inferBytes()); err != nil {
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
				c = model.push(c, int32(ids[r*T+t]))
			}
			if !last || t == T-1 {
				o := r*outT + min(t, outT-1)
				model.Logits(c, logits[o*VocabSize:(o+1)*VocabSize])
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
	// Report adds HeapBytes, RSSBytes, Goroutines, and each model's name and open sessions.
	return b.Report(func(m *Model) sdk.ModelStats {
		return sdk.ModelStats{Task: sdk.TaskCausalLM, WeightBytes: m.bytes}
	}), nil
}
