// Package backend implements the onnxrt backend (sdk.Backend) on plugins/onnxrt/ort.
package backend

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/modelrt/modelrt/plugins/onnxrt/ort"
	"github.com/modelrt/modelrt/sdk"
)

// Version is the backend's version, reported by Describe.
const Version = "0.1.0"

// logvarMin and logvarMax clamp the encoder's log-variance as diffusers'
// DiagonalGaussianDistribution does; Optimum's vae_encoder graph returns it unclamped.
const (
	logvarMin = -30
	logvarMax = 20
)

// Config is the backend's HCL config block.
type Config struct {
	IntraOpThreads         int      `json:"intra_op_threads"`
	InterOpThreads         int      `json:"inter_op_threads"`
	GraphOptimizationLevel string   `json:"graph_optimization_level"`
	MemoryArena            *bool    `json:"memory_arena"`
	AllowSpinning          *bool    `json:"allow_spinning"`
	ExecutionProviders     []string `json:"execution_providers"`
	LibraryPath            string   `json:"library_path"`
	LogLevel               string   `json:"log_level"`
	sdk.Limits
}

// Backend is the onnxrt backend. Call New.
type Backend struct {
	// The loaded models and their sessions; it implements UnloadModel and CloseSession.
	*sdk.ModelTable[*model, *session]
	mu     sync.Mutex // guards cfg, limits and inited
	cfg    Config
	limits sdk.Limits // validate.go
	inited bool
}

type model struct {
	name, task string
	lm         *ort.LM
	stepThread *osThread    // runs the model's batched Steps (step.go)
	graph      *ort.Graph   // task graph
	enc, dec   *ort.Graph   // task vae (either may be nil)
	vae        sdk.VAEFacts // task vae: its facts and limits, what the request checks need (validate.go)
}

type session struct {
	s      *ort.LMSession
	batch  int
	thread *osThread // runs every Forward of the session (thread.go)
}

func (s *session) close() {
	s.s.Close()
	s.thread.stop()
}

// New returns an empty onnxrt backend.
func New() *Backend {
	return &Backend{ModelTable: sdk.NewModelTable("onnxrt", (*model).close, (*session).close)}
}

// Describe implements sdk.Backend.
func (b *Backend) Describe(context.Context, *sdk.DescribeRequest) (*sdk.DescribeResponse, error) {
	return &sdk.DescribeResponse{
		Name: "onnxrt", Version: Version,
		Description: "ONNX Runtime " + ort.Version() + " sessions on exported .onnx graphs",
		Tasks:       []string{sdk.TaskCausalLM, sdk.TaskVAE, sdk.TaskGraph},
		// Step works on every causal-lm model; a model's metadata "step" says whether its
		// graph runs the sessions as one padded batch or one after another (step.go).
		Capabilities: []string{sdk.CapabilityStep},
		Formats:      []string{"onnx"},
		ConfigSchema: sdk.ConfigSchema{Attributes: append([]sdk.ConfigAttribute{
			{Name: "intra_op_threads", Type: "number", Description: "threads inside one op (0 = one per physical core)"},
			{Name: "inter_op_threads", Type: "number", Description: "threads across ops (0 = default)"},
			{Name: "graph_optimization_level", Type: "string", Description: "disable, basic, extended or all (default)"},
			{Name: "memory_arena", Type: "bool", Description: "use ONNX Runtime's CPU memory arena (default true)"},
			{Name: "allow_spinning", Type: "bool", Description: "let idle ORT threads spin (ORT's default, true); false is faster on a shared, loaded machine (docs/onnxruntime.md)"},
			{Name: "execution_providers", Type: "list(string)", Description: `in order, CPU last: "cpu" (default), "cuda", ...; an unavailable one is an error`},
			{Name: "library_path", Type: "string", Description: "libonnxruntime.so.1 (default: $ONNXRUNTIME_SHARED_LIBRARY_PATH, then docs/onnxruntime.md)"},
			{Name: "log_level", Type: "string", Description: "ONNX Runtime's own log level: verbose, info, warning, error, fatal"},
		}, sdk.LimitAttributes...)},
	}, nil
}

// Configure implements sdk.Configurer.
func (b *Backend) Configure(_ context.Context, req *sdk.ConfigureRequest) (*sdk.ConfigureResponse, error) {
	var c Config
	if len(req.Config) > 0 {
		dec := json.NewDecoder(bytes.NewReader(req.Config))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			return nil, sdk.InvalidArgument("onnxrt config: %v", err)
		}
	}
	if c.IntraOpThreads < 0 || c.InterOpThreads < 0 {
		return nil, sdk.InvalidArgument("onnxrt config: thread counts must be >= 0")
	}
	if err := c.Limits.Check("onnxrt"); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.inited && (c.LibraryPath != b.cfg.LibraryPath) {
		return nil, sdk.FailedPrecondition("onnxrt config: library_path cannot change after the library is loaded")
	}
	b.cfg, b.limits = c, c.Limits
	return &sdk.ConfigureResponse{}, nil
}

func (b *Backend) sessionOptions() ort.SessionOptions {
	return ort.SessionOptions{
		IntraOpThreads: b.cfg.IntraOpThreads, InterOpThreads: b.cfg.InterOpThreads,
		GraphOptimizationLevel: b.cfg.GraphOptimizationLevel, MemoryArena: b.cfg.MemoryArena,
		AllowSpinning:      b.cfg.AllowSpinning,
		ExecutionProviders: b.cfg.ExecutionProviders,
	}
}

// initLocked loads the ONNX Runtime library on first use.
func (b *Backend) initLocked() error {
	if b.inited {
		return nil
	}
	if err := ort.Init(ort.EnvOptions{LibraryPath: b.cfg.LibraryPath, LogLevel: b.cfg.LogLevel}); err != nil {
		return sdk.FailedPrecondition("%v", err)
	}
	b.inited = true
	return nil
}

func loadError(name string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return sdk.NotFound("load model %q: %v", name, err)
	case errors.Is(err, ort.ErrProviderUnavailable), errors.Is(err, ort.ErrLibrary):
		return sdk.FailedPrecondition("load model %q: %v", name, err)
	}
	return sdk.InvalidArgument("load model %q: %v", name, err)
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// LoadModel implements sdk.Backend. Without a task, a directory with vae_encoder/ or
// vae_decoder/ is a vae, a graph with input_ids a causal-lm, and anything else a graph.
func (b *Backend) LoadModel(ctx context.Context, req *sdk.LoadModelRequest) (*sdk.LoadModelResponse, error) {
	if req.Name == "" {
		return nil, sdk.InvalidArgument("load model: empty name")
	}
	if _, err := os.Stat(req.Path); err != nil {
		return nil, loadError(req.Name, err)
	}
	b.mu.Lock()
	err := b.initLocked()
	so := b.sessionOptions()
	b.mu.Unlock()
	if err != nil {
		return nil, err
	}
	task := req.Task
	if task == "" {
		switch {
		case exists(filepath.Join(req.Path, "vae_encoder")) || exists(filepath.Join(req.Path, "vae_decoder")):
			task = sdk.TaskVAE
		default:
			task = sdk.TaskCausalLM
			if _, err := ort.InspectLM(req.Path); errors.Is(err, ort.ErrUnsupportedGraph) {
				task = sdk.TaskGraph
			}
		}
	}
	m := &model{name: req.Name, task: task}
	info := sdk.ModelInfo{Name: req.Name, Task: task, Format: "onnx"}
	switch task {
	case sdk.TaskCausalLM:
		lm, err := ort.LoadLM(req.Path, so)
		if err != nil {
			return nil, loadError(req.Name, err)
		}
		m.lm, m.stepThread = lm, newOSThread()
		li := lm.Info()
		info.Metadata = sdk.LMFacts{VocabSize: li.VocabSize, Context: li.MaxContext, EOS: int(max(li.EOS, -1)),
			MaxInferBytes: b.currentLimits().InferBytes()}.Metadata()
		info.Metadata["convention"] = string(li.Convention)
		info.Metadata[MetaStep] = stepMode(lm)
		if !lm.CanBatch() {
			slog.Info("onnxrt: the graph cannot express padding (no attention_mask input or a fixed batch axis): a Step runs its sessions one after another",
				"model", req.Name, "path", li.Path)
		}
		// attention_mask only when the graph takes one: without it padding cannot be expressed,
		// and callers (conformance) learn that here.
		info.Inputs = []sdk.TensorSpec{{Name: "input_ids", DType: sdk.Int64, Shape: []int64{-1, -1}}}
		if li.HasAttentionMask {
			info.Inputs = append(info.Inputs, sdk.TensorSpec{Name: "attention_mask", DType: sdk.Int64, Shape: []int64{-1, -1}})
		}
		info.Outputs = []sdk.TensorSpec{{Name: "logits", DType: sdk.Float32, Shape: []int64{-1, -1, int64(li.VocabSize)}}}
	case sdk.TaskVAE, sdk.TaskVAEEncode, sdk.TaskVAEDecode:
		m.task, info.Task = sdk.TaskVAE, sdk.TaskVAE
		facts, err := loadVAE(m, req.Path, so)
		if err != nil {
			return nil, loadError(req.Name, err)
		}
		info.Metadata = m.vaeFacts(facts, b.currentLimits()).Metadata()
	case sdk.TaskGraph:
		path := req.Path
		if st, err := os.Stat(path); err == nil && st.IsDir() {
			path = filepath.Join(path, "model.onnx")
		}
		g, err := ort.LoadGraph(path, so)
		if err != nil {
			return nil, loadError(req.Name, err)
		}
		m.graph = g
		info.Inputs, info.Outputs = specs(g.Inputs()), specs(g.Outputs())
	default:
		return nil, sdk.Unimplemented("load model %q: the onnxrt backend has no task %q", req.Name, task)
	}
	b.Put(req.Name, m)
	return &sdk.LoadModelResponse{Model: info}, nil
}

// loadVAE loads Optimum's split: vae_encoder/model.onnx (sample → latent_parameters) and
// vae_decoder/model.onnx (latent_sample → sample). The graphs' static channel dimensions give
// the channel counts; config.json (in the directory or either part), when present, gives them
// too (and wins), with the downsampling factor, the scaling factor and the sample size.
func loadVAE(m *model, dir string, so ort.SessionOptions) (sdk.VAEFacts, error) {
	var facts sdk.VAEFacts
	encPath := filepath.Join(dir, "vae_encoder", "model.onnx")
	decPath := filepath.Join(dir, "vae_decoder", "model.onnx")
	if !exists(encPath) && !exists(decPath) {
		return facts, fmt.Errorf("%s: neither vae_encoder/model.onnx nor vae_decoder/model.onnx exists: %w", dir, fs.ErrNotExist)
	}
	var err error
	if exists(encPath) {
		if m.enc, err = ort.LoadGraph(encPath, so); err != nil {
			return facts, err
		}
		if err := wantIO(m.enc, encPath, "sample", "latent_parameters"); err != nil {
			return facts, err
		}
		facts.InChannels = channels(m.enc.Inputs(), "sample")
	}
	if exists(decPath) {
		if m.dec, err = ort.LoadGraph(decPath, so); err != nil {
			return facts, err
		}
		if err := wantIO(m.dec, decPath, "latent_sample", "sample"); err != nil {
			return facts, err
		}
		facts.LatentChannels = channels(m.dec.Inputs(), "latent_sample")
		facts.OutChannels = channels(m.dec.Outputs(), "sample")
	}
	for _, p := range []string{filepath.Join(dir, "config.json"), filepath.Join(dir, "vae_decoder", "config.json"), filepath.Join(dir, "vae_encoder", "config.json")} {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var c struct {
			ScalingFactor    float32 `json:"scaling_factor"`
			LatentChannels   int     `json:"latent_channels"`
			InChannels       int     `json:"in_channels"`
			OutChannels      int     `json:"out_channels"`
			BlockOutChannels []int   `json:"block_out_channels"`
			SampleSize       int     `json:"sample_size"`
		}
		if err := json.Unmarshal(data, &c); err != nil {
			return facts, fmt.Errorf("%s: %v", p, err)
		}
		facts.ScalingFactor, facts.SampleSize = c.ScalingFactor, c.SampleSize
		for _, f := range []struct {
			dst *int
			v   int
		}{{&facts.LatentChannels, c.LatentChannels}, {&facts.InChannels, c.InChannels}, {&facts.OutChannels, c.OutChannels}} {
			if f.v > 0 {
				*f.dst = f.v
			}
		}
		if n := len(c.BlockOutChannels); n > 0 {
			facts.DownsampleFactor = 1 << (n - 1)
		}
		break
	}
	return facts, nil
}

// channels returns the static channel dimension (1) of the 4-D tensor name in list, or 0.
func channels(list []ort.TensorInfo, name string) int {
	for _, t := range list {
		if t.Name == name && len(t.Shape) == 4 && t.Shape[1] > 0 {
			return int(t.Shape[1])
		}
	}
	return 0
}

func wantIO(g *ort.Graph, path, in, out string) error {
	has := func(list []ort.TensorInfo, name string) bool {
		for _, t := range list {
			if t.Name == name {
				return true
			}
		}
		return false
	}
	if !has(g.Inputs(), in) || !has(g.Outputs(), out) {
		return fmt.Errorf("%s: want input %q and output %q (Optimum's VAE split), have inputs %v outputs %v: %w",
			path, in, out, names(g.Inputs()), names(g.Outputs()), ort.ErrUnsupportedGraph)
	}
	return nil
}

func names(list []ort.TensorInfo) []string {
	out := make([]string, len(list))
	for i, t := range list {
		out[i] = t.Name
	}
	return out
}

func specs(list []ort.TensorInfo) []sdk.TensorSpec {
	out := make([]sdk.TensorSpec, len(list))
	for i, t := range list {
		out[i] = sdk.TensorSpec{Name: t.Name, DType: sdk.DType(t.DType), Shape: t.Shape}
	}
	return out
}

func (m *model) close() {
	if m.lm != nil {
		m.lm.Close()
		m.stepThread.stop()
	}
	for _, g := range []*ort.Graph{m.graph, m.enc, m.dec} {
		if g != nil {
			g.Close()
		}
	}
}

// OpenSession implements sdk.Sessions.
func (b *Backend) OpenSession(_ context.Context, req *sdk.OpenSessionRequest) (*sdk.OpenSessionResponse, error) {
	return b.Open(req, func(m *model, batch int) (*session, error) {
		if m.lm == nil {
			return nil, sdk.FailedPrecondition("model %q (%s) has no sessions; only causal-lm models do", req.Model, m.task)
		}
		s, err := m.lm.NewSession(batch)
		if err != nil {
			return nil, sdk.Internal("open session: %v", err)
		}
		return &session{s: s, batch: batch, thread: newOSThread()}, nil
	})
}

// Infer implements sdk.Backend.
func (b *Backend) Infer(ctx context.Context, req *sdk.InferRequest) (*sdk.InferResponse, error) {
	m, err := b.Get(req.Model)
	if err != nil {
		return nil, err
	}
	switch {
	case m.lm != nil:
		return b.inferLM(ctx, m, req)
	case m.graph != nil:
		return inferGraph(ctx, m.graph, req)
	default:
		return b.inferVAE(ctx, m, req)
	}
}

func ortError(err error) error {
	switch {
	case errors.Is(err, ort.ErrInvalidInput):
		return sdk.InvalidArgument("%v", err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	}
	return sdk.Internal("%v", err)
}

func (b *Backend) inferLM(ctx context.Context, m *model, req *sdk.InferRequest) (*sdk.InferResponse, error) {
	in, err := sdk.CausalLMInputs(req)
	if err != nil {
		return nil, err
	}
	var (
		s      *ort.LMSession
		thread *osThread
	)
	if req.Session != "" {
		ss, err := b.Session(req.Session, m.name)
		if err != nil {
			return nil, err
		}
		if ss.batch != in.Batch {
			return nil, sdk.InvalidArgument("session %q was opened for batch %d, input_ids has batch %d", req.Session, ss.batch, in.Batch)
		}
		if err := b.checkLM(m, in, ss.s.Len()); err != nil {
			return nil, err
		}
		s, thread = ss.s, ss.thread
	} else {
		if err := b.checkLM(m, in, 0); err != nil {
			return nil, err
		}
		if s, err = m.lm.NewSession(in.Batch); err != nil {
			return nil, sdk.Internal("%v", err)
		}
		defer s.Close()
	}
	V := m.lm.Info().VocabSize
	logits := make([]float32, in.Batch*in.OutLen()*V)
	forward := func() error { return s.Forward(ctx, in.IDs, in.Batch, in.Len, in.Mask, in.LastOnly, logits) }
	if thread != nil {
		thread.run(func() { err = forward() })
	} else {
		err = forward()
	}
	if err != nil {
		return nil, ortError(err)
	}
	return &sdk.InferResponse{Outputs: map[string]*sdk.Tensor{
		"logits": sdk.FromFloat32([]int64{int64(in.Batch), int64(in.OutLen()), int64(V)}, logits),
	}}, nil
}

func (b *Backend) inferVAE(ctx context.Context, m *model, req *sdk.InferRequest) (*sdk.InferResponse, error) {
	in, err := sdk.VAEInputs(req)
	if err != nil {
		return nil, err
	}
	if err := b.checkVAE(m, in); err != nil {
		return nil, err
	}
	shape := []int64{int64(in.N), int64(in.C), int64(in.H), int64(in.W)}
	x := sdk.FromFloat32(shape, in.X)
	if in.Task == sdk.TaskVAEEncode {
		if m.enc == nil {
			return nil, sdk.Unimplemented("model %q has no vae_encoder/model.onnx", m.name)
		}
		out, err := m.enc.Run(ctx, map[string]ort.TensorValue{"sample": {DType: "float32", Shape: shape, Data: x.Data}})
		if err != nil {
			return nil, ortError(err)
		}
		p := out["latent_parameters"]
		pt := &sdk.Tensor{DType: sdk.DType(p.DType), Shape: p.Shape, Data: p.Data}
		v, err := pt.Float32s()
		if err != nil || len(p.Shape) != 4 || p.Shape[1]%2 != 0 {
			return nil, sdk.Internal("vae_encoder returned latent_parameters %v %v: %v", p.DType, p.Shape, err)
		}
		// (N, 2L, h, w): mean is the first L channels, logvar the last L.
		n, l2, h, w := int(p.Shape[0]), int(p.Shape[1]), int(p.Shape[2]), int(p.Shape[3])
		l, plane := l2/2, h*w
		mean := make([]float32, n*l*plane)
		logvar := make([]float32, n*l*plane)
		for i := range n {
			copy(mean[i*l*plane:(i+1)*l*plane], v[i*l2*plane:i*l2*plane+l*plane])
			lv := logvar[i*l*plane : (i+1)*l*plane]
			copy(lv, v[i*l2*plane+l*plane:(i+1)*l2*plane])
			for j, x := range lv {
				lv[j] = min(max(x, logvarMin), logvarMax)
			}
		}
		ls := []int64{int64(n), int64(l), int64(h), int64(w)}
		return &sdk.InferResponse{Outputs: map[string]*sdk.Tensor{"mean": sdk.FromFloat32(ls, mean), "logvar": sdk.FromFloat32(ls, logvar)}}, nil
	}
	if m.dec == nil {
		return nil, sdk.Unimplemented("model %q has no vae_decoder/model.onnx", m.name)
	}
	if m.vae.LatentChannels > 0 && in.C != m.vae.LatentChannels {
		return nil, sdk.InvalidArgument("vae-decode: latent has %d channels, the decoder takes %d", in.C, m.vae.LatentChannels)
	}
	out, err := m.dec.Run(ctx, map[string]ort.TensorValue{"latent_sample": {DType: "float32", Shape: shape, Data: x.Data}})
	if err != nil {
		return nil, ortError(err)
	}
	s := out["sample"]
	return &sdk.InferResponse{Outputs: map[string]*sdk.Tensor{"image": {DType: sdk.DType(s.DType), Shape: s.Shape, Data: s.Data}}}, nil
}

func inferGraph(ctx context.Context, g *ort.Graph, req *sdk.InferRequest) (*sdk.InferResponse, error) {
	in := make(map[string]ort.TensorValue, len(req.Inputs))
	for k, t := range req.Inputs {
		in[k] = ort.TensorValue{DType: string(t.DType), Shape: t.Shape, Data: t.Data}
	}
	out, err := g.Run(ctx, in)
	if err != nil {
		return nil, ortError(err)
	}
	resp := &sdk.InferResponse{Outputs: map[string]*sdk.Tensor{}}
	want := map[string]bool{}
	for _, n := range req.Outputs {
		want[n] = true
	}
	for k, v := range out {
		if len(want) > 0 && !want[k] {
			continue
		}
		t := &sdk.Tensor{DType: sdk.DType(v.DType), Shape: v.Shape, Data: v.Data}
		if t.DType.Size() == 0 {
			return nil, sdk.Unimplemented("graph output %q has dtype %s, which protocol v1 does not carry", k, v.DType)
		}
		resp.Outputs[k] = t
	}
	return resp, nil
}

// Health implements sdk.Backend.
func (b *Backend) Health(context.Context, *sdk.HealthRequest) (*sdk.HealthResponse, error) {
	return &sdk.HealthResponse{Status: "ok"}, nil
}

// Stats implements sdk.StatsReporter.
func (b *Backend) Stats(context.Context, *sdk.StatsRequest) (*sdk.StatsResponse, error) {
	return b.Report(func(m *model) sdk.ModelStats { return sdk.ModelStats{Task: m.task} }), nil
}
