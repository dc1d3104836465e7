// Package toylm is a tiny causal-lm backend built only on package sdk, with switchable flaws:
// the conformance tests run the contract checks on it once without flaws (every check passes)
// and once per flaw (the check aimed at that flaw must fail).
//
// The model: vocabulary V = 32, context 64. Each row keeps a hash h of the real tokens fed so
// far (h ← h·1000003 + id + 1); the logits of a position are V entries of a 4 MiB table, picked
// by h. It is a real causal LM in the sense the checks need: the logits of a position depend on
// every earlier real token and on nothing else, so KV-cache, batching, padding and sessions
// behave as in a transformer, and the table gives a load/unload a real memory footprint.
package toylm

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"

	"github.com/modelrt/modelrt/sdk"
)

// Model facts.
const (
	Vocab      = 32
	NPositions = 64
	EOS        = Vocab - 1
	tableSize  = 1 << 20 // float32s: 4 MiB per loaded model
)

// Flaw selects a deliberate defect, each aimed at one contract check.
type Flaw string

// Flaws.
const (
	None            Flaw = ""
	FlawDescribe    Flaw = "describe"     // Describe omits the task it serves
	FlawInvalid     Flaw = "invalid"      // no input validation: bad tensors panic (Internal) or run
	FlawNotFound    Flaw = "notfound"     // unknown models are FailedPrecondition
	FlawCancel      Flaw = "cancel"       // ignores the context
	FlawSessions    Flaw = "sessions"     // all sessions of a model share one state
	FlawLeak        Flaw = "leak"         // UnloadModel keeps the model's table alive
	FlawWornOut     Flaw = "wornout"      // fails every call after 600
	FlawGoroutines  Flaw = "goroutines"   // every call leaks a goroutine
	FlawSessionLeak Flaw = "session-leak" // CloseSession forgets to free the session
	FlawCallLeak    Flaw = "call-leak"    // every call keeps 64 KiB alive

	// Flaws aimed at the case runner's checks (conformance.Run).
	FlawKVCache Flaw = "kv-cache" // a session forgets what it was fed
	FlawBatch   Flaw = "batch"    // a row of a batch starts from the previous row's state
	FlawPadding Flaw = "padding"  // the attention mask is ignored
	FlawReload  Flaw = "reload"   // every LoadModel builds a different table
	FlawNoise   Flaw = "noise"    // logits get fresh noise on every call
	FlawOffset  Flaw = "offset"   // logits are off by 0.1
)

// Flaws lists the flaws aimed at the contract checks.
var Flaws = []Flaw{FlawDescribe, FlawInvalid, FlawNotFound, FlawCancel, FlawSessions, FlawLeak, FlawWornOut, FlawGoroutines, FlawSessionLeak, FlawCallLeak}

// RunnerFlaws lists the flaws aimed at the case runner's checks.
var RunnerFlaws = []Flaw{FlawKVCache, FlawBatch, FlawPadding, FlawReload, FlawNoise, FlawOffset}

// graveyard is where FlawLeak keeps unloaded tables.
var (
	graveMu   sync.Mutex
	graveyard [][]float32
)

// Backend is the toy backend.
type Backend struct {
	Flaw Flaw

	mu       sync.Mutex
	models   map[string]*model
	sessions map[string]*session
	next     int
	calls    int
	loads    int
	never    chan struct{}
}

type model struct {
	name   string
	table  []float32
	shared *session // FlawSessions
}

type session struct {
	mu    sync.Mutex
	model *model
	h     []uint64
	pos   int
}

// New returns a toy backend with the given flaw (None for a correct one).
func New(f Flaw) *Backend {
	return &Backend{Flaw: f, models: map[string]*model{}, sessions: map[string]*session{}, never: make(chan struct{})}
}

// Describe implements sdk.Backend.
func (b *Backend) Describe(context.Context, *sdk.DescribeRequest) (*sdk.DescribeResponse, error) {
	tasks := []string{sdk.TaskCausalLM}
	if b.Flaw == FlawDescribe {
		tasks = []string{sdk.TaskGraph}
	}
	return &sdk.DescribeResponse{Name: "toylm", Version: "0.1.0", Description: "toy causal LM for the conformance tests",
		Tasks: tasks, Formats: []string{"any"}}, nil
}

// LoadModel implements sdk.Backend. Any existing directory loads.
func (b *Backend) LoadModel(ctx context.Context, req *sdk.LoadModelRequest) (*sdk.LoadModelResponse, error) {
	if st, err := os.Stat(req.Path); err != nil {
		return nil, sdk.NotFound("load %q: %v", req.Name, err)
	} else if !st.IsDir() {
		return nil, sdk.InvalidArgument("load %q: %s is not a directory", req.Name, req.Path)
	}
	if req.Task != "" && req.Task != sdk.TaskCausalLM {
		return nil, sdk.Unimplemented("toylm has no task %q", req.Task)
	}
	b.mu.Lock()
	b.loads++
	phase := 0.0
	if b.Flaw == FlawReload {
		phase = float64(b.loads)
	}
	b.mu.Unlock()
	m := &model{name: req.Name, table: make([]float32, tableSize)}
	for i := range m.table {
		m.table[i] = float32(math.Sin(float64(i)*0.37 + phase))
	}
	b.mu.Lock()
	b.models[req.Name] = m
	b.mu.Unlock()
	return &sdk.LoadModelResponse{Model: sdk.ModelInfo{Name: req.Name, Task: sdk.TaskCausalLM, Format: "toy",
		Metadata: sdk.LMFacts{VocabSize: Vocab, Context: NPositions, EOS: EOS}.Metadata()}}, nil
}

// UnloadModel implements sdk.Backend.
func (b *Backend) UnloadModel(_ context.Context, req *sdk.UnloadModelRequest) (*sdk.UnloadModelResponse, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	m, ok := b.models[req.Name]
	if !ok {
		return nil, b.notFound("model %q is not loaded", req.Name)
	}
	if b.Flaw == FlawLeak {
		graveMu.Lock()
		graveyard = append(graveyard, m.table)
		graveMu.Unlock()
	}
	delete(b.models, req.Name)
	for id, s := range b.sessions {
		if s.model == m {
			delete(b.sessions, id)
		}
	}
	return &sdk.UnloadModelResponse{}, nil
}

func (b *Backend) notFound(format string, args ...any) error {
	if b.Flaw == FlawNotFound {
		return sdk.FailedPrecondition(format, args...)
	}
	return sdk.NotFound(format, args...)
}

// OpenSession implements sdk.Sessions.
func (b *Backend) OpenSession(_ context.Context, req *sdk.OpenSessionRequest) (*sdk.OpenSessionResponse, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	m, ok := b.models[req.Model]
	if !ok {
		return nil, b.notFound("model %q is not loaded", req.Model)
	}
	n := req.BatchSize
	if n == 0 {
		n = 1
	}
	if n < 0 || n > 1024 {
		return nil, sdk.InvalidArgument("batch_size %d outside [1, 1024]", req.BatchSize)
	}
	s := &session{model: m, h: make([]uint64, n)}
	if b.Flaw == FlawSessions {
		if m.shared == nil {
			m.shared = s
		}
		s = m.shared
	}
	b.next++
	id := fmt.Sprintf("toy-%d", b.next)
	b.sessions[id] = s
	return &sdk.OpenSessionResponse{Session: id}, nil
}

// CloseSession implements sdk.Sessions.
func (b *Backend) CloseSession(_ context.Context, req *sdk.CloseSessionRequest) (*sdk.CloseSessionResponse, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.sessions[req.Session]; !ok {
		return nil, b.notFound("session %q is not open", req.Session)
	}
	if b.Flaw != FlawSessionLeak {
		delete(b.sessions, req.Session)
	}
	return &sdk.CloseSessionResponse{}, nil
}

// Infer implements sdk.Backend: input_ids (B,T), attention_mask (B,P+T) → logits (B,T,V).
func (b *Backend) Infer(ctx context.Context, req *sdk.InferRequest) (*sdk.InferResponse, error) {
	check := b.Flaw != FlawInvalid
	if b.Flaw != FlawCancel {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	b.mu.Lock()
	b.calls++
	calls := b.calls
	m, ok := b.models[req.Model]
	var s *session
	if req.Session != "" {
		s = b.sessions[req.Session]
	}
	b.mu.Unlock()
	if b.Flaw == FlawGoroutines {
		go func() { <-b.never }()
	}
	if b.Flaw == FlawCallLeak {
		graveMu.Lock()
		graveyard = append(graveyard, make([]float32, 16<<10))
		graveMu.Unlock()
	}
	if b.Flaw == FlawWornOut && calls > 600 {
		return nil, sdk.Internal("toylm is worn out after %d calls", calls-1)
	}
	if !ok {
		return nil, b.notFound("model %q is not loaded", req.Model)
	}
	if req.Session != "" && s == nil {
		return nil, b.notFound("session %q is not open", req.Session)
	}
	idsT := req.Inputs["input_ids"]
	if check {
		if idsT == nil {
			return nil, sdk.InvalidArgument("input_ids is missing")
		}
		if len(idsT.Shape) != 2 || idsT.Shape[0] == 0 || idsT.Shape[1] == 0 {
			return nil, sdk.InvalidArgument("input_ids: want a non-empty (batch, sequence), got %v", idsT.Shape)
		}
	}
	ids, err := idsT.Int64s()
	if err != nil && check {
		return nil, err
	}
	B, T := int(idsT.Shape[0]), int(idsT.Shape[1])
	last := false
	switch req.Params[sdk.ParamLogits] {
	case "", "all":
	case "last":
		last = true
	default:
		if check {
			return nil, sdk.InvalidArgument("params.logits = %q", req.Params[sdk.ParamLogits])
		}
	}
	if s == nil {
		s = &session{model: m, h: make([]uint64, B)}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if check && len(s.h) != B {
		return nil, sdk.InvalidArgument("session has batch %d, input_ids %d", len(s.h), B)
	}
	if check && s.pos+T > NPositions {
		return nil, sdk.InvalidArgument("%d positions exceed the context of %d", s.pos+T, NPositions)
	}
	var mask []int64
	if mt := req.Inputs["attention_mask"]; mt != nil {
		if mask, err = mt.Int64s(); err != nil && check {
			return nil, err
		}
		if check && (len(mt.Shape) != 2 || mt.Shape[0] != int64(B) || mt.Shape[1] != int64(s.pos+T)) {
			return nil, sdk.InvalidArgument("attention_mask shape %v, want (%d, %d)", mt.Shape, B, s.pos+T)
		}
	}
	for _, id := range ids {
		if check && (id < 0 || id >= Vocab) {
			return nil, sdk.InvalidArgument("token id %d outside [0, %d)", id, Vocab)
		}
	}
	outT := T
	if last {
		outT = 1
	}
	logits := make([]float32, B*outT*Vocab)
	var carry uint64 // FlawBatch
	for r := range B {
		if b.Flaw != FlawCancel {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		h := s.h[r]
		if b.Flaw == FlawBatch {
			h += carry
		}
		for t := range T {
			if mask == nil || b.Flaw == FlawPadding || mask[r*(s.pos+T)+s.pos+t] == 1 {
				h = h*1000003 + uint64(ids[r*T+t]+1)
			}
			if !last || t == T-1 {
				row := logits[(r*outT+min(t, outT-1))*Vocab:]
				for v := range Vocab {
					row[v] = m.table[(h+uint64(v)*7919)%tableSize]
					switch b.Flaw {
					case FlawNoise:
						row[v] += float32(rand.Float64())
					case FlawOffset:
						row[v] += 0.1
					}
				}
			}
		}
		carry = h
		if req.Session != "" && b.Flaw != FlawKVCache {
			s.h[r] = h
		}
	}
	if req.Session != "" {
		s.pos += T
	}
	return &sdk.InferResponse{Outputs: map[string]*sdk.Tensor{"logits": sdk.FromFloat32([]int64{int64(B), int64(outT), Vocab}, logits)}}, nil
}

// Health implements sdk.Backend.
func (b *Backend) Health(context.Context, *sdk.HealthRequest) (*sdk.HealthResponse, error) {
	return &sdk.HealthResponse{Status: "ok"}, nil
}

// Stats implements sdk.StatsReporter; HeapBytes is the live heap after a GC.
func (b *Backend) Stats(context.Context, *sdk.StatsRequest) (*sdk.StatsResponse, error) {
	runtime.GC()
	b.mu.Lock()
	defer b.mu.Unlock()
	st := &sdk.StatsResponse{OpenSessions: len(b.sessions)}
	sdk.ProcessStats(st)
	for _, m := range b.models {
		st.Models = append(st.Models, sdk.ModelStats{Name: m.name, Task: sdk.TaskCausalLM, WeightBytes: 4 * tableSize})
	}
	return st, nil
}
