// Package lm drives a causal language model that lives in a backend: it opens sessions (the KV
// cache stays in the backend) and turns each decode step into one Infer call, so that
// runtime/generate can run the same decode loop over any backend.
package lm

import (
	"context"
	"fmt"
	"time"

	"github.com/modelrt/modelrt/sdk"
)

// Backend is what a causal-LM session needs of a backend: inference and sessions. A
// runtime/plugin.Plugin satisfies it, and so does any in-process sdk.Backend with sdk.Sessions.
type Backend interface {
	sdk.Backend
	sdk.Sessions
}

// Model is a causal-LM model loaded in a backend.
type Model struct {
	Backend Backend
	Name    string
	// The facts of the backend's ModelInfo: VocabSize, Context (0 when the backend did not
	// say), EOS (-1 when none), MaxInferBytes (the backend's memory budget per call; 0: none).
	sdk.LMFacts
	// Batcher, when set, runs OpenStepSession's single-row sessions in shared steps.
	Batcher Batcher
	// Linger, when positive, goes with every Session.Step as sdk.ParamLinger: the caller runs
	// its decode loop alone (modelrt generate, modelrt bench), so the backend may keep its
	// threads polling between steps. Leave it zero where steps share the cores with other work
	// (the daemon).
	Linger time.Duration
}

// DecodeLinger is the Linger of a decode loop that runs alone: a step's round trip through
// the plugin and the host's sampling take ~0.2–1.5 ms on the 2-core machines measured.
const DecodeLinger = 3 * time.Millisecond

// Load loads dir into b under name and reads its metadata.
func Load(ctx context.Context, b Backend, name, dir string, options map[string]string) (*Model, error) {
	r, err := b.LoadModel(ctx, &sdk.LoadModelRequest{Name: name, Path: dir, Task: sdk.TaskCausalLM, Options: options})
	if err != nil {
		return nil, err
	}
	return FromInfo(b, r.Model)
}

// FromInfo wraps a model already loaded in b, described by info.
func FromInfo(b Backend, info sdk.ModelInfo) (*Model, error) {
	facts, err := sdk.LMFactsOf(info)
	if err != nil {
		return nil, err
	}
	return &Model{Backend: b, Name: info.Name, LMFacts: facts}, nil
}

// Session is one open session of a Model; it implements generate.Stepper.
type Session struct {
	m         *Model
	id        string
	batch     int
	past      int    // positions fed so far (check.go)
	logitsBuf []byte // the last step's logits, refilled by the next (see Step)
}

// Open opens a session for batch rows.
func (m *Model) Open(ctx context.Context, batch int) (*Session, error) {
	r, err := m.Backend.OpenSession(ctx, &sdk.OpenSessionRequest{Model: m.Name, BatchSize: batch})
	if err != nil {
		return nil, err
	}
	return &Session{m: m, id: r.Session, batch: batch}, nil
}

// ID returns the backend's session id.
func (s *Session) ID() string { return s.id }

// Step implements generate.Stepper: one Infer call with the new ids and the full mask, asking
// for the last position's logits only. The logits it returns are valid until the next Step,
// which refills the same memory when they come through shared memory.
func (s *Session) Step(ctx context.Context, ids []int64, B, T int, mask []int64) ([]float32, error) {
	if err := s.check(ids, B, T); err != nil {
		return nil, err
	}
	in := map[string]*sdk.Tensor{"input_ids": sdk.FromInt64([]int64{int64(B), int64(T)}, ids)}
	if mask != nil {
		in["attention_mask"] = sdk.FromInt64([]int64{int64(B), int64(len(mask) / max(B, 1))}, mask)
	}
	params := map[string]string{sdk.ParamLogits: "last"}
	if s.m.Linger > 0 {
		params[sdk.ParamLinger] = s.m.Linger.String()
	}
	r, err := s.m.Backend.Infer(ctx, &sdk.InferRequest{
		Model: s.m.Name, Session: s.id, Inputs: in,
		Outputs: []string{"logits"}, Params: params,
		// generate.Stepper lets a step reuse the last step's logits: no allocation per token.
		OutputBuffers: map[string][]byte{"logits": s.logitsBuf},
	})
	if err != nil {
		return nil, err
	}
	s.past += T
	lt, ok := r.Outputs["logits"]
	if !ok {
		return nil, fmt.Errorf("model %q: backend returned no logits", s.m.Name)
	}
	s.logitsBuf = lt.Data
	v, err := lt.Float32s()
	if err != nil {
		return nil, fmt.Errorf("model %q: logits: %w", s.m.Name, err)
	}
	if len(lt.Shape) == 0 || lt.Shape[0] != int64(B) || len(v)%B != 0 {
		return nil, fmt.Errorf("model %q: logits of shape %v for batch %d", s.m.Name, lt.Shape, B)
	}
	// A backend may return (B,1,V) or (B,T,V); the decode loop wants the last position (B,V).
	V := int(lt.Shape[len(lt.Shape)-1])
	rows := len(v) / (B * V)
	if rows == 1 {
		return v, nil
	}
	out := make([]float32, B*V)
	for b := range B {
		copy(out[b*V:(b+1)*V], v[(b*rows+rows-1)*V:(b*rows+rows)*V])
	}
	return out, nil
}

// Close frees the session's state in the backend. It uses a fresh context so that a cancelled
// request still frees its session.
func (s *Session) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := s.m.Backend.CloseSession(ctx, &sdk.CloseSessionRequest{Session: s.id})
	return err
}
