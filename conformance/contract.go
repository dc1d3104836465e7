package conformance

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"time"

	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/modelrt/modelrt/runtime/lm"
	"github.com/modelrt/modelrt/runtime/plugin"
	"github.com/modelrt/modelrt/sdk"
)

// Names of the contract checks, in the order they run.
const (
	CheckDescribe   = "describe"
	CheckInvalid    = "invalid-argument"
	CheckNotFound   = "not-found"
	CheckCancel     = "cancellation"
	CheckSessions   = "sessions-isolated"
	CheckUnload     = "unload-frees-memory"
	CheckSequential = "sequential-calls"
	CheckStep       = "batched-step"
)

// DefaultCalls is how many sequential calls CheckSequential makes when Contract.Calls is 0.
const DefaultCalls = 1000

// Contract limits, named so that a failure message can cite them.
const (
	// unloadCycles is how many load/unload cycles CheckUnload runs. Enough that a leak of
	// leakFraction of a small model per cycle stands out of the allocator's noise: over 8
	// cycles of the 120 KB gpt2-odd ONNX graph the onnxrt plugin's heap moved by up to ~970 KB
	// with no leak (over 32 cycles, 384 KB).
	unloadCycles = 24
	// leakFraction: the heap may keep at most this fraction of a model per cycle after unload.
	leakFraction = 0.5
	// leakSlack is heap growth over all cycles that is noise, not a leak (allocator caches).
	leakSlack = 512 << 10
	// rssSlack is resident-set growth over all cycles that is noise (allocator arenas).
	rssSlack = 8 << 20
	// callLeakLimit bounds the growth of an in-process backend's live heap over the calls.
	callLeakLimit = 8 << 20
	// goroutineSlack is how many more goroutines a backend may have after the calls.
	goroutineSlack = 16
	// sessionEvery: CheckSequential opens, uses and closes a session every this many calls.
	sessionEvery = 10
)

// Contract describes the backend under test and a model it serves. Exactly one of Plugin and
// Backend is set.
type Contract struct {
	// Plugin is the path of a backend plugin executable; it is started as a real process.
	Plugin string
	// Env is added to the plugin's environment.
	Env []string
	// Backend is an in-process backend; it is served over an in-memory gRPC connection so that
	// errors cross the same wire as in production, and is also called directly where the wire
	// would hide what is checked (a context already cancelled when the call starts).
	Backend sdk.Backend
	// Model is a model directory the backend can load, for Task.
	Model string
	// Task is the task the model is loaded with: sdk.TaskCausalLM or sdk.TaskVAE.
	Task string
	// Calls is the number of calls of CheckSequential (DefaultCalls when 0).
	Calls int
	// Config, when set, is passed to Configure (the JSON object of an HCL config block) before
	// any check, as the host does for a backend whose block has one.
	Config json.RawMessage
	// Logger receives the plugin host's records (warnings and up; discarded when nil).
	Logger *slog.Logger
}

// ContractResult is the outcome of one contract check.
type ContractResult struct {
	Name string
	// Err is why the check failed (nil: passed, or skipped).
	Err error
	// Skipped says why the check could not run for this backend (empty: it ran).
	Skipped string
	// Notes say what was checked, for the log.
	Notes []string
}

// CheckBackend runs every contract check on the backend as a subtest of t, in the manner of
// terraform-plugin-testing's resource.Test:
//
//	func TestContract(t *testing.T) {
//		conformance.CheckBackend(t, conformance.Contract{Plugin: bin, Model: "testdata/model", Task: sdk.TaskCausalLM})
//	}
func CheckBackend(t *testing.T, c Contract) {
	t.Helper()
	for _, r := range VerifyContract(t, c) {
		t.Run(r.Name, func(t *testing.T) {
			for _, n := range r.Notes {
				t.Log(n)
			}
			if r.Skipped != "" {
				t.Skip("skipped: " + r.Skipped)
			}
			if r.Err != nil {
				t.Error(r.Err)
			}
		})
	}
}

// VerifyContract runs every contract check and returns their results; CheckBackend reports
// them as subtests. t is used to set up the backend (t.Fatal when it cannot start) and to
// clean it up.
func VerifyContract(t testing.TB, c Contract) []ContractResult {
	t.Helper()
	if (c.Plugin == "") == (c.Backend == nil) {
		t.Fatal("conformance: Contract needs exactly one of Plugin and Backend")
	}
	if c.Task != sdk.TaskCausalLM && c.Task != sdk.TaskVAE {
		t.Fatalf("conformance: Contract.Task %q: want %q or %q", c.Task, sdk.TaskCausalLM, sdk.TaskVAE)
	}
	if c.Calls == 0 {
		c.Calls = DefaultCalls
	}
	model, err := filepath.Abs(c.Model)
	if err != nil {
		t.Fatal(err)
	}
	c.Model = model
	ck := &contractRun{c: c}
	if c.Plugin != "" {
		logger := c.Logger
		if logger == nil {
			logger = slog.New(slog.NewTextHandler(discard{}, nil))
		}
		p, err := plugin.Start(context.Background(), plugin.Config{Name: filepath.Base(c.Plugin), Path: c.Plugin, Env: c.Env,
			Logger: logger, LogLevel: "warn", CallTimeout: time.Minute})
		if err != nil {
			t.Fatalf("conformance: %v", err)
		}
		t.Cleanup(func() { p.Close() })
		ck.be, ck.plugin = p, p
	} else {
		// The SDK's own server and client shims over a loopback connection: what Serve and
		// the host use, without go-plugin's process handling (and its debug logging).
		gp := sdk.ServerPlugins(c.Backend)[sdk.ProtocolVersion][sdk.PluginName].(goplugin.GRPCPlugin)
		conn, server := goplugin.TestGRPCConn(t, func(s *grpc.Server) { gp.GRPCServer(nil, s) })
		t.Cleanup(func() { conn.Close(); server.Stop() })
		raw, err := gp.GRPCClient(context.Background(), nil, conn)
		if err != nil {
			t.Fatalf("conformance: client: %v", err)
		}
		ck.be = raw.(*sdk.Client)
	}
	if c.Config != nil {
		if _, err := ck.be.Configure(context.Background(), &sdk.ConfigureRequest{Config: c.Config}); err != nil {
			t.Fatalf("conformance: Configure %s: %v", c.Config, err)
		}
	}
	checks := []struct {
		name string
		fn   func(context.Context, *ContractResult) error
	}{
		{CheckDescribe, ck.describe},
		{CheckInvalid, ck.invalid},
		{CheckNotFound, ck.notFound},
		{CheckCancel, ck.cancel},
		{CheckSessions, ck.sessions},
		{CheckUnload, ck.unloadCheck},
		{CheckSequential, ck.sequential},
		{CheckStep, ck.step},
	}
	var out []ContractResult
	for _, chk := range checks {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		r := ContractResult{Name: chk.name}
		r.Err = chk.fn(ctx, &r)
		cancel()
		out = append(out, r)
	}
	return out
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// backendAPI is what the checks call: the plugin host and the in-process client both have it.
type backendAPI interface {
	lm.Backend
	sdk.StatsReporter
	sdk.Configurer
}

type contractRun struct {
	c      Contract
	be     backendAPI
	plugin *plugin.Plugin // nil in-process
	seq    int
	vocab  int          // causal-lm, from the model's facts
	vae    sdk.VAEFacts // vae: InChannels is 3 when the backend did not say
}

func (k *contractRun) load(ctx context.Context) (string, sdk.ModelInfo, error) {
	k.seq++
	name := fmt.Sprintf("contract-%d", k.seq)
	r, err := k.be.LoadModel(ctx, &sdk.LoadModelRequest{Name: name, Path: k.c.Model, Task: k.c.Task})
	if err != nil {
		return "", sdk.ModelInfo{}, fmt.Errorf("LoadModel %s: %w", k.c.Model, err)
	}
	return name, r.Model, k.readInfo(r.Model)
}

func (k *contractRun) drop(ctx context.Context, name string) {
	k.be.UnloadModel(ctx, &sdk.UnloadModelRequest{Name: name})
}

// readInfo reads the facts the checks need; the check "describe" asks for the others.
func (k *contractRun) readInfo(info sdk.ModelInfo) error {
	if k.c.Task == sdk.TaskCausalLM {
		f, err := sdk.LMFactsOf(info)
		if err != nil {
			return err
		}
		if f.VocabSize <= 0 {
			return fmt.Errorf("metadata %s = %d: want a positive vocabulary size", sdk.MetaVocabSize, f.VocabSize)
		}
		k.vocab = f.VocabSize
		return nil
	}
	f, err := sdk.VAEFactsOf(info)
	if err != nil {
		return err
	}
	if f.LatentChannels <= 0 || f.DownsampleFactor <= 0 {
		return fmt.Errorf("metadata %s = %d, %s = %d: want positive", sdk.MetaLatentChannels, f.LatentChannels, sdk.MetaDownsampleFactor, f.DownsampleFactor)
	}
	if f.InChannels == 0 {
		f.InChannels = 3 // an RGB image; "describe" reports the missing fact
	}
	k.vae = f
	return nil
}

// tokens returns n valid token ids, varied by salt.
func (k *contractRun) tokens(n, salt int) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = int64((i*7 + salt*13 + 3) % k.vocab)
	}
	return out
}

func ones(n int) []int64 {
	m := make([]int64, n)
	for i := range m {
		m[i] = 1
	}
	return m
}

// lmCall runs ids (1,T) with the full mask (1,P+T) and returns the logits.
func (k *contractRun) lmCall(ctx context.Context, model, session string, ids []int64, past int) ([]float32, []int64, error) {
	r, err := k.be.Infer(ctx, &sdk.InferRequest{Model: model, Session: session, Params: map[string]string{sdk.ParamLogits: "all"},
		Inputs: map[string]*sdk.Tensor{
			"input_ids":      sdk.FromInt64([]int64{1, int64(len(ids))}, slices.Clone(ids)),
			"attention_mask": sdk.FromInt64([]int64{1, int64(past + len(ids))}, ones(past+len(ids))),
		}})
	if err != nil {
		return nil, nil, err
	}
	lt, ok := r.Outputs["logits"]
	if !ok {
		return nil, nil, fmt.Errorf("no logits output (outputs: %s)", sdk.InputNames(r.Outputs))
	}
	v, err := lt.Float32s()
	if err != nil {
		return nil, nil, fmt.Errorf("logits: %w", err)
	}
	return slices.Clone(v), lt.Shape, nil
}

// vaeImage returns a small image (1,C,H,W) in [-1,1] with H = W = 2·factor.
func (k *contractRun) vaeImage(salt int) *sdk.Tensor {
	s := 2 * k.vae.DownsampleFactor
	v := make([]float32, k.vae.InChannels*s*s)
	for i := range v {
		v[i] = float32((i*37+salt*11)%200)/100 - 1
	}
	return sdk.FromFloat32([]int64{1, int64(k.vae.InChannels), int64(s), int64(s)}, v)
}

// call runs the model's cheapest call (one token, or one small image) and returns its output.
func (k *contractRun) call(ctx context.Context, model string, salt int) ([]float32, error) {
	if k.c.Task == sdk.TaskCausalLM {
		v, _, err := k.lmCall(ctx, model, "", k.tokens(3, salt), 0)
		return v, err
	}
	r, err := k.be.Infer(ctx, &sdk.InferRequest{Model: model, Params: map[string]string{sdk.ParamTask: sdk.TaskVAEEncode},
		Inputs: map[string]*sdk.Tensor{"image": k.vaeImage(salt)}})
	if err != nil {
		return nil, err
	}
	mt, ok := r.Outputs["mean"]
	if !ok {
		return nil, fmt.Errorf("vae-encode: no mean output (outputs: %s)", sdk.InputNames(r.Outputs))
	}
	v, err := mt.Float32s()
	return slices.Clone(v), err
}
