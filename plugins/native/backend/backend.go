// Package backend implements the native backend (sdk.Backend) on native/gpt2 and native/vae.
// It is what cmd modelrt-native serves; tests use it in-process too.
package backend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/modelrt/modelrt/native/gpt2"
	"github.com/modelrt/modelrt/native/kernels"
	"github.com/modelrt/modelrt/native/vae"
	"github.com/modelrt/modelrt/sdk"
)

// Version is the backend's version, reported by Describe.
const Version = "0.1.0"

// Backend is the native backend. The zero value is not usable; call New.
type Backend struct {
	// The loaded models and their sessions; it implements UnloadModel and CloseSession.
	*sdk.ModelTable[*model, *session]
	mu     sync.Mutex // guards limits
	limits sdk.Limits // validate.go
}

type model struct {
	name  string
	task  string
	gpt2  *gpt2.Model
	vae   *vae.Model
	bytes int64
	// spare is the buffer of the last logits Infer returned, taken back through
	// InferResponse.Release once the SDK has copied them out, for the next call. Without it
	// every decode step left its logits (200 KB at batch 1) as garbage, and with the small heap
	// target the plugin keeps (main.go) the collector ran every 10–25 ms, each time on one of
	// the two cores the kernels' workers were using. One buffer, not a pool: a sync.Pool kept
	// the logits of every batch size the bench had run until a collection, which were now
	// rare, and that 2 MB set the int8 plugin's peak RSS over its target.
	spareMu sync.Mutex
	spare   []float32
}

// logitsBuf returns a buffer of n logits: the spare when it is large enough.
func (m *model) logitsBuf(n int) []float32 {
	m.spareMu.Lock()
	defer m.spareMu.Unlock()
	if cap(m.spare) >= n {
		s := m.spare[:n]
		m.spare = nil
		return s
	}
	return make([]float32, n)
}

// maxSpareLogits bounds the spare: the logits of one large call (a batch of full-length
// prompts without last_only) are not kept for the process's life. 4 Mi values (16 MiB) hold a
// batch of 83 GPT-2 logits rows, and equal a shared-memory slot, beyond which outputs travel
// inline anyway.
const maxSpareLogits = 4 << 20

// release makes logits the spare (InferResponse.Release); a smaller spare it replaces, and a
// buffer over maxSpareLogits, are left to the collector.
func (m *model) release(logits []float32) {
	if cap(logits) > maxSpareLogits {
		return
	}
	m.spareMu.Lock()
	defer m.spareMu.Unlock()
	if cap(logits) >= cap(m.spare) {
		m.spare = logits
	}
}

type session struct {
	mu    sync.Mutex // one call at a time per session: the cache is not safe for concurrent use
	cache *gpt2.Cache
}

// New returns an empty native backend.
func New() *Backend {
	return &Backend{ModelTable: sdk.NewModelTable[*model, *session]("native", nil, freeSession)}
}

// freeSession returns a closed session's KV cache to the system at once (it lives outside the
// Go heap), after any call still using it.
func freeSession(s *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cache.Release()
}

// Describe implements sdk.Backend.
func (b *Backend) Describe(context.Context, *sdk.DescribeRequest) (*sdk.DescribeResponse, error) {
	return &sdk.DescribeResponse{
		Name: "native", Version: Version,
		Description: "pure-Go GPT-2 and AutoencoderKL on safetensors weights",
		Tasks:       []string{sdk.TaskCausalLM, sdk.TaskVAE},
		Formats:     []string{"safetensors"},
		// Step: causal-lm sessions advance together in one forward (step.go).
		Capabilities: []string{sdk.CapabilityStep},
		ConfigSchema: sdk.ConfigSchema{Attributes: append([]sdk.ConfigAttribute{
			{Name: "threads", Type: "number", Description: "worker threads for the kernels (default: all cores)"},
		}, sdk.LimitAttributes...)},
	}, nil
}

// Config is the backend's HCL config block.
type Config struct {
	Threads int `json:"threads"`
	sdk.Limits
}

// Configure implements sdk.Configurer.
func (b *Backend) Configure(_ context.Context, req *sdk.ConfigureRequest) (*sdk.ConfigureResponse, error) {
	var c Config
	if len(req.Config) > 0 {
		if err := json.Unmarshal(req.Config, &c); err != nil {
			return nil, sdk.InvalidArgument("native config: %v", err)
		}
	}
	if c.Threads < 0 {
		return nil, sdk.InvalidArgument("native config: threads must be >= 0, got %d", c.Threads)
	}
	if err := c.Limits.Check("native"); err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.limits = c.Limits
	b.mu.Unlock()
	if c.Threads > 0 {
		runtime.GOMAXPROCS(c.Threads)
	}
	return &sdk.ConfigureResponse{}, nil
}

// detectTask reads config.json to tell a GPT-2 from an AutoencoderKL when no task is given.
func detectTask(dir string) (string, error) {
	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return "", err
	}
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(data, &probe); err != nil {
		return "", fmt.Errorf("%s: %v", filepath.Join(dir, "config.json"), err)
	}
	if _, ok := probe["latent_channels"]; ok {
		return sdk.TaskVAE, nil
	}
	if _, ok := probe["n_embd"]; ok {
		return sdk.TaskCausalLM, nil
	}
	return "", fmt.Errorf("%s: neither a GPT-2 config (n_embd) nor an AutoencoderKL config (latent_channels)", filepath.Join(dir, "config.json"))
}

// loadError maps a load failure to a Code: a missing directory or file is NotFound, anything
// else about the files' contents is InvalidArgument (the user must fix the model directory).
func loadError(name string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return sdk.NotFound("load model %q: %v", name, err)
	}
	return sdk.InvalidArgument("load model %q: %v", name, err)
}

// LoadModel implements sdk.Backend.
func (b *Backend) LoadModel(ctx context.Context, req *sdk.LoadModelRequest) (*sdk.LoadModelResponse, error) {
	if req.Name == "" {
		return nil, sdk.InvalidArgument("load model: empty name")
	}
	if st, err := os.Stat(req.Path); err != nil {
		return nil, loadError(req.Name, err)
	} else if !st.IsDir() {
		return nil, sdk.InvalidArgument("load model %q: %s is not a directory", req.Name, req.Path)
	}
	task := req.Task
	if task == "" {
		t, err := detectTask(req.Path)
		if err != nil {
			return nil, loadError(req.Name, err)
		}
		task = t
	}
	m := &model{name: req.Name, task: task}
	info := sdk.ModelInfo{Name: req.Name, Task: task, Format: "safetensors"}
	slog.Info("loading model", "model", req.Name, "path", req.Path, "task", task)
	limits := b.currentLimits() // published with the facts, for the host's own checks (validate.go)
	switch task {
	case sdk.TaskCausalLM:
		g, err := loadGPT2(req.Path, req.Options)
		if err != nil {
			return nil, loadError(req.Name, err)
		}
		m.gpt2 = g
		c := g.Config()
		m.bytes = g.WeightBytes()
		info.Metadata = sdk.LMFacts{VocabSize: c.VocabSize, Context: c.NPositions, EOS: c.EOSTokenID, MaxInferBytes: limits.InferBytes()}.Metadata()
		info.Metadata["bos_token_id"] = strconv.Itoa(c.BOSTokenID) // beyond the host's facts
		info.Inputs = []sdk.TensorSpec{
			{Name: "input_ids", DType: sdk.Int64, Shape: []int64{-1, -1}, DimNames: []string{"batch", "sequence"}},
			{Name: "attention_mask", DType: sdk.Int64, Shape: []int64{-1, -1}, DimNames: []string{"batch", "past+sequence"}},
		}
		info.Outputs = []sdk.TensorSpec{{Name: "logits", DType: sdk.Float32, Shape: []int64{-1, -1, int64(c.VocabSize)}, DimNames: []string{"batch", "sequence", "vocab"}}}
	case sdk.TaskVAE, sdk.TaskVAEEncode, sdk.TaskVAEDecode:
		v, err := vae.Load(req.Path)
		if err != nil {
			return nil, loadError(req.Name, err)
		}
		m.vae, m.task = v, sdk.TaskVAE
		info.Task = sdk.TaskVAE
		c := v.Config()
		info.Metadata = sdk.VAEFacts{InChannels: c.InChannels, OutChannels: c.OutChannels, LatentChannels: c.LatentChannels,
			DownsampleFactor: c.DownsampleFactor(), ScalingFactor: c.ScalingFactor, SampleSize: c.SampleSize,
			MaxInferBytes: limits.InferBytes(), MaxImageSize: limits.ImageSide(c.SampleSize)}.Metadata()
	default:
		return nil, sdk.Unimplemented("load model %q: the native backend has no task %q (it has %s, %s)", req.Name, task, sdk.TaskCausalLM, sdk.TaskVAE)
	}
	b.Put(req.Name, m)
	return &sdk.LoadModelResponse{Model: info}, nil
}

// UnloadModel implements sdk.Backend; it collects garbage so that the weights' memory is
// released at once.
func (b *Backend) UnloadModel(ctx context.Context, req *sdk.UnloadModelRequest) (*sdk.UnloadModelResponse, error) {
	r, err := b.ModelTable.UnloadModel(ctx, req)
	runtime.GC()
	return r, err
}

// OpenSession implements sdk.Sessions: a KV cache for BatchSize rows.
func (b *Backend) OpenSession(_ context.Context, req *sdk.OpenSessionRequest) (*sdk.OpenSessionResponse, error) {
	return b.Open(req, func(m *model, batch int) (*session, error) {
		if m.gpt2 == nil {
			return nil, sdk.FailedPrecondition("model %q (%s) has no sessions; only causal-lm models do", req.Model, m.task)
		}
		if err := b.checkSession(m, batch); err != nil {
			return nil, err
		}
		return &session{cache: m.gpt2.NewCache(batch)}, nil
	})
}

// Infer implements sdk.Backend.
func (b *Backend) Infer(ctx context.Context, req *sdk.InferRequest) (*sdk.InferResponse, error) {
	m, err := b.Get(req.Model)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	switch {
	case m.gpt2 != nil:
		return b.inferLM(ctx, m, req)
	case m.vae != nil:
		return b.inferVAE(ctx, m, req)
	}
	return nil, sdk.Internal("model %q has nothing loaded", req.Model)
}

func (b *Backend) inferLM(ctx context.Context, m *model, req *sdk.InferRequest) (*sdk.InferResponse, error) {
	in, err := sdk.CausalLMInputs(req)
	if err != nil {
		return nil, err
	}
	var cache *gpt2.Cache
	var sess *session
	if req.Session != "" {
		s, err := b.Session(req.Session, m.name)
		if err != nil {
			return nil, err
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.cache.Batch() != in.Batch {
			return nil, sdk.InvalidArgument("session %q was opened for batch %d, input_ids has batch %d", req.Session, s.cache.Batch(), in.Batch)
		}
		if err := b.checkLM(m, in, s.cache.Len()); err != nil {
			return nil, err
		}
		cache, sess = s.cache, s
	} else {
		if err := b.checkLM(m, in, 0); err != nil {
			return nil, err
		}
		cache = m.gpt2.NewCache(in.Batch)
		defer cache.Release()
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	V := m.gpt2.Config().VocabSize
	logits := m.logitsBuf(in.Batch * in.OutLen() * V)
	if err := m.gpt2.ForwardContext(ctx, cache, in.IDs, in.Batch, in.Len, in.Mask, in.LastOnly, logits); err != nil {
		m.release(logits)
		if errors.Is(err, gpt2.ErrInvalidInput) {
			return nil, sdk.InvalidArgument("%v", err)
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, sdk.Internal("%v", err)
	}
	if sess != nil {
		if v := req.Params[sdk.ParamLinger]; v != "" {
			// A malformed or negative hint is ignored: it asks for nothing the reply depends on.
			if d, err := time.ParseDuration(v); err == nil && d > 0 {
				kernels.Linger(d)
			}
		}
		// The first decode step after a large prefill drops the prefill's working buffers
		// (gpt2.Cache.Shrank; 26 MiB for a batch-8, 64-token prompt of GPT-2 124M). Left to the
		// collector and the background scavenger, they stayed resident while the KV cache grew
		// and set the int8 plugin's peak RSS, so they are returned to the system at once: one
		// forced collection per such session, a few milliseconds (the heap holds no weights). A
		// small prefill's buffers stay with the cache (and the next session's), resident.
		if cache.Shrank() {
			debug.FreeOSMemory()
		}
	}
	return &sdk.InferResponse{Outputs: map[string]*sdk.Tensor{
		"logits": sdk.FromFloat32([]int64{int64(in.Batch), int64(in.OutLen()), int64(V)}, logits),
	}, Release: func() { m.release(logits) }}, nil
}

func (b *Backend) inferVAE(ctx context.Context, m *model, req *sdk.InferRequest) (*sdk.InferResponse, error) {
	in, err := sdk.VAEInputs(req)
	if err != nil {
		return nil, err
	}
	if err := b.checkVAE(m, in); err != nil {
		return nil, err
	}
	cfg := m.vae.Config()
	f := cfg.DownsampleFactor()
	if in.Task == sdk.TaskVAEEncode {
		mean, logvar, err := m.vae.EncodeContext(ctx, in.X, in.N, in.C, in.H, in.W)
		if err != nil {
			return nil, vaeError(err)
		}
		shape := []int64{int64(in.N), int64(cfg.LatentChannels), int64(in.H / f), int64(in.W / f)}
		return &sdk.InferResponse{Outputs: map[string]*sdk.Tensor{
			"mean": sdk.FromFloat32(shape, mean), "logvar": sdk.FromFloat32(shape, logvar),
		}}, nil
	}
	img, err := m.vae.DecodeContext(ctx, in.X, in.N, in.C, in.H, in.W)
	if err != nil {
		return nil, vaeError(err)
	}
	shape := []int64{int64(in.N), int64(cfg.OutChannels), int64(in.H * f), int64(in.W * f)}
	return &sdk.InferResponse{Outputs: map[string]*sdk.Tensor{"image": sdk.FromFloat32(shape, img)}}, nil
}

func vaeError(err error) error {
	if errors.Is(err, vae.ErrInvalidInput) {
		return sdk.InvalidArgument("%v", err)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return sdk.Internal("%v", err)
}

// Health implements sdk.Backend.
func (b *Backend) Health(context.Context, *sdk.HealthRequest) (*sdk.HealthResponse, error) {
	return &sdk.HealthResponse{Status: "ok"}, nil
}

// Stats implements sdk.StatsReporter.
func (b *Backend) Stats(context.Context, *sdk.StatsRequest) (*sdk.StatsResponse, error) {
	return b.Report(func(m *model) sdk.ModelStats { return sdk.ModelStats{Task: m.task, WeightBytes: m.bytes} }), nil
}
