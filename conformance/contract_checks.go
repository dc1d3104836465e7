package conformance

// The contract checks, one method of contractRun each, in the order VerifyContract runs them.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/modelrt/modelrt/pipelines"
	"github.com/modelrt/modelrt/runtime/vae"
	"github.com/modelrt/modelrt/sdk"
)

// --- describe ---

func (k *contractRun) describe(ctx context.Context, r *ContractResult) error {
	d, err := k.be.Describe(ctx, &sdk.DescribeRequest{})
	if err != nil {
		return fmt.Errorf("Describe: %w", err)
	}
	var errs []error
	if d.Name == "" {
		errs = append(errs, errors.New("Describe: Name is empty"))
	}
	if d.Version == "" {
		errs = append(errs, errors.New("Describe: Version is empty"))
	}
	if d.ProtocolVersion != sdk.ProtocolVersion {
		errs = append(errs, fmt.Errorf("Describe: ProtocolVersion %d, want %d", d.ProtocolVersion, sdk.ProtocolVersion))
	}
	if !slices.Contains(d.Tasks, k.c.Task) {
		errs = append(errs, fmt.Errorf("Describe: Tasks %v do not list %q, the task the model is loaded with", d.Tasks, k.c.Task))
	}
	// The host decodes HCL config blocks with this schema; check it as the host will.
	if _, err := pipelines.ConfigSpec(&d.ConfigSchema); err != nil {
		errs = append(errs, fmt.Errorf("Describe: ConfigSchema: %v", err))
	}
	if h, err := k.be.Health(ctx, &sdk.HealthRequest{}); err != nil || h.Status != "ok" {
		errs = append(errs, fmt.Errorf("Health before any model: %+v, %v; want status ok", h, err))
	}
	r.Notes = append(r.Notes, fmt.Sprintf("%s %s, protocol v%d, tasks %v", d.Name, d.Version, d.ProtocolVersion, d.Tasks))
	name, info, err := k.load(ctx)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	defer k.drop(ctx, name)
	if info.Name != name {
		errs = append(errs, fmt.Errorf("LoadModel: ModelInfo.Name %q, want %q", info.Name, name))
	}
	if info.Task != k.c.Task {
		errs = append(errs, fmt.Errorf("LoadModel: ModelInfo.Task %q, want %q", info.Task, k.c.Task))
	}
	if k.c.Task == sdk.TaskCausalLM {
		if f, err := sdk.LMFactsOf(info); err != nil {
			errs = append(errs, fmt.Errorf("LoadModel: %w", err))
		} else if err := f.Check(); err != nil {
			errs = append(errs, fmt.Errorf("LoadModel: %w", err))
		}
		T := 3
		v, shape, err := k.lmCall(ctx, name, "", k.tokens(T, 0), 0)
		if err != nil {
			errs = append(errs, fmt.Errorf("Infer of %d tokens: %w", T, err))
		} else if want := []int64{1, int64(T), int64(k.vocab)}; !slices.Equal(shape, want) {
			errs = append(errs, fmt.Errorf("Infer of %d tokens: logits shape %v, want %v (vocab_size from the metadata)", T, shape, want))
		} else if slices.ContainsFunc(v, func(x float32) bool { return x != x }) {
			errs = append(errs, errors.New("Infer: logits contain NaN"))
		}
		for _, o := range info.Outputs {
			if o.Name == "logits" && len(o.Shape) == 3 && o.Shape[2] != -1 && o.Shape[2] != int64(k.vocab) {
				errs = append(errs, fmt.Errorf("ModelInfo.Outputs: logits shape %v disagrees with vocab_size %d", o.Shape, k.vocab))
			}
		}
		r.Notes = append(r.Notes, fmt.Sprintf("causal-lm: vocab_size %d, logits (1,%d,%d)", k.vocab, T, k.vocab))
	} else {
		if f, err := sdk.VAEFactsOf(info); err != nil {
			errs = append(errs, fmt.Errorf("LoadModel: %w", err))
		} else if err := f.Check(); err != nil {
			errs = append(errs, fmt.Errorf("LoadModel: %w", err))
		}
		// runtime/vae checks the outputs: float32 mean and logvar of (1,L,2,2) for a (1,C,2f,2f)
		// image, L and f from the facts.
		img := k.vaeImage(0)
		if _, _, err := (&vae.Model{Backend: k.be, Name: name, VAEFacts: k.vae}).Encode(ctx, img); err != nil {
			errs = append(errs, fmt.Errorf("vae-encode of %v: %w", img.Shape, err))
		}
	}
	return errors.Join(errs...)
}

// --- invalid-argument ---

type badCase struct {
	what    string
	session bool // run in a session of batch 1
	req     sdk.InferRequest
}

func (k *contractRun) invalid(ctx context.Context, r *ContractResult) error {
	name, _, err := k.load(ctx)
	if err != nil {
		return err
	}
	defer k.drop(ctx, name)
	V := int64(k.vocab)
	ids := func(shape []int64, v ...int64) *sdk.Tensor { return sdk.FromInt64(shape, v) }
	var cases []badCase
	if k.c.Task == sdk.TaskCausalLM {
		in := func(m map[string]*sdk.Tensor) sdk.InferRequest { return sdk.InferRequest{Model: name, Inputs: m} }
		cases = []badCase{
			{what: "no inputs", req: in(map[string]*sdk.Tensor{})},
			{what: "input_ids as float32", req: in(map[string]*sdk.Tensor{"input_ids": sdk.FromFloat32([]int64{1, 2}, []float32{1, 2})})},
			{what: "input_ids of rank 1", req: in(map[string]*sdk.Tensor{"input_ids": ids([]int64{2}, 1, 2)})},
			{what: "input_ids of rank 3", req: in(map[string]*sdk.Tensor{"input_ids": ids([]int64{1, 1, 2}, 1, 2)})},
			{what: "input_ids of shape (1,0)", req: in(map[string]*sdk.Tensor{"input_ids": ids([]int64{1, 0})})},
			{what: "token id = vocab_size", req: in(map[string]*sdk.Tensor{"input_ids": ids([]int64{1, 2}, 1, V)})},
			{what: "token id -1", req: in(map[string]*sdk.Tensor{"input_ids": ids([]int64{1, 2}, -1, 1)})},
			{what: "attention_mask longer than the sequence", req: in(map[string]*sdk.Tensor{"input_ids": ids([]int64{1, 2}, 1, 2), "attention_mask": ids([]int64{1, 5}, 1, 1, 1, 1, 1)})},
			{what: "attention_mask as float32", req: in(map[string]*sdk.Tensor{"input_ids": ids([]int64{1, 2}, 1, 2), "attention_mask": sdk.FromFloat32([]int64{1, 2}, []float32{1, 1})})},
			{what: "params.logits = \"bogus\"", req: sdk.InferRequest{Model: name, Params: map[string]string{sdk.ParamLogits: "bogus"}, Inputs: map[string]*sdk.Tensor{"input_ids": ids([]int64{1, 2}, 1, 2)}}},
			{what: "batch 2 in a session of batch 1", session: true, req: in(map[string]*sdk.Tensor{"input_ids": ids([]int64{2, 1}, 1, 2)})},
		}
	} else {
		s := int64(2 * k.vae.DownsampleFactor)
		C, L := int64(k.vae.InChannels), int64(k.vae.LatentChannels)
		img := func(shape []int64) *sdk.Tensor {
			n, _ := sdk.NumElements(shape, 4)
			return sdk.FromFloat32(shape, make([]float32, n))
		}
		task := func(t string, m map[string]*sdk.Tensor) sdk.InferRequest {
			return sdk.InferRequest{Model: name, Params: map[string]string{sdk.ParamTask: t}, Inputs: m}
		}
		cases = []badCase{
			{what: "vae-encode without image", req: task(sdk.TaskVAEEncode, map[string]*sdk.Tensor{})},
			{what: "image of rank 3", req: task(sdk.TaskVAEEncode, map[string]*sdk.Tensor{"image": img([]int64{C, s, s})})},
			{what: "image as int64", req: task(sdk.TaskVAEEncode, map[string]*sdk.Tensor{"image": ids([]int64{1, 1, 1, 1}, 0)})},
			{what: "image with in_channels+1 channels", req: task(sdk.TaskVAEEncode, map[string]*sdk.Tensor{"image": img([]int64{1, C + 1, s, s})})},
			{what: "latent with latent_channels+1 channels", req: task(sdk.TaskVAEDecode, map[string]*sdk.Tensor{"latent": img([]int64{1, L + 1, 2, 2})})},
			{what: "params.task = \"bogus\"", req: task("bogus", map[string]*sdk.Tensor{"image": img([]int64{1, C, s, s})})},
		}
	}
	var errs []error
	for _, bc := range cases {
		req := bc.req
		if bc.session {
			s, err := k.be.OpenSession(ctx, &sdk.OpenSessionRequest{Model: name, BatchSize: 1})
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: OpenSession: %w", bc.what, err))
				continue
			}
			req.Session = s.Session
			defer k.be.CloseSession(ctx, &sdk.CloseSessionRequest{Session: s.Session})
		}
		_, err := k.be.Infer(ctx, &req)
		if c := sdk.CodeOf(err); c != sdk.CodeInvalidArgument {
			errs = append(errs, fmt.Errorf("Infer with %s: code %v (%v), want InvalidArgument", bc.what, c, err))
		}
	}
	if k.c.Task == sdk.TaskCausalLM {
		_, err := k.be.OpenSession(ctx, &sdk.OpenSessionRequest{Model: name, BatchSize: -1})
		if c := sdk.CodeOf(err); c != sdk.CodeInvalidArgument {
			errs = append(errs, fmt.Errorf("OpenSession with batch_size -1: code %v (%v), want InvalidArgument", c, err))
		}
	}
	// Still serving after every refusal.
	if _, err := k.call(ctx, name, 0); err != nil {
		errs = append(errs, fmt.Errorf("a valid call after the malformed ones: %w", err))
	}
	r.Notes = append(r.Notes, fmt.Sprintf("%d malformed requests", len(cases)))
	return errors.Join(errs...)
}

// --- not-found ---

func (k *contractRun) notFound(ctx context.Context, r *ContractResult) error {
	var errs []error
	want := func(what string, err error) {
		if c := sdk.CodeOf(err); c != sdk.CodeNotFound {
			errs = append(errs, fmt.Errorf("%s: code %v (%v), want NotFound", what, c, err))
		}
	}
	_, err := k.be.Infer(ctx, &sdk.InferRequest{Model: "no-such-model", Inputs: map[string]*sdk.Tensor{"input_ids": sdk.FromInt64([]int64{1, 1}, []int64{0})}})
	want("Infer on a model never loaded", err)
	_, err = k.be.UnloadModel(ctx, &sdk.UnloadModelRequest{Name: "no-such-model"})
	want("UnloadModel of a model never loaded", err)
	_, err = k.be.LoadModel(ctx, &sdk.LoadModelRequest{Name: "missing", Path: filepath.Join(os.TempDir(), "modelrt-no-such-model-dir", strconv.Itoa(os.Getpid())), Task: k.c.Task})
	want("LoadModel of a directory that does not exist", err)
	name, _, err := k.load(ctx)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	if _, err := k.be.UnloadModel(ctx, &sdk.UnloadModelRequest{Name: name}); err != nil {
		errs = append(errs, fmt.Errorf("UnloadModel: %w", err))
	}
	_, err = k.call(ctx, name, 0)
	want("Infer on a model after UnloadModel", err)
	if k.c.Task == sdk.TaskCausalLM {
		_, err = k.be.OpenSession(ctx, &sdk.OpenSessionRequest{Model: "no-such-model", BatchSize: 1})
		want("OpenSession on a model never loaded", err)
		_, err = k.be.CloseSession(ctx, &sdk.CloseSessionRequest{Session: "no-such-session"})
		want("CloseSession of a session never opened", err)
		name, _, err := k.load(ctx)
		if err != nil {
			return errors.Join(append(errs, err)...)
		}
		defer k.drop(ctx, name)
		_, _, err = k.lmCall(ctx, name, "no-such-session", k.tokens(1, 0), 0)
		want("Infer in a session never opened", err)
	}
	return errors.Join(errs...)
}

// --- cancellation ---

func (k *contractRun) cancel(ctx context.Context, r *ContractResult) error {
	name, _, err := k.load(ctx)
	if err != nil {
		return err
	}
	defer k.drop(ctx, name)
	var errs []error
	if k.c.Backend != nil {
		// Called directly: over gRPC a context that is already done never reaches the backend.
		done, cancel := context.WithCancel(ctx)
		cancel()
		resp, err := k.c.Backend.Infer(done, k.cheapRequest(name))
		if c := sdk.CodeOf(err); c != sdk.CodeCanceled && c != sdk.CodeDeadlineExceeded {
			errs = append(errs, fmt.Errorf("Infer with a cancelled context: code %v (%v), want Canceled or DeadlineExceeded (check ctx.Err() before working)", c, err))
		}
		if resp != nil && len(resp.Outputs) > 0 {
			errs = append(errs, errors.New("Infer with a cancelled context returned outputs"))
		}
		past, cancel2 := context.WithDeadline(ctx, time.Now().Add(-time.Second))
		_, err = k.c.Backend.Infer(past, k.cheapRequest(name))
		cancel2()
		if c := sdk.CodeOf(err); c != sdk.CodeCanceled && c != sdk.CodeDeadlineExceeded {
			errs = append(errs, fmt.Errorf("Infer with an expired deadline: code %v (%v), want DeadlineExceeded or Canceled", c, err))
		}
		r.Notes = append(r.Notes, "in-process: a cancelled context and an expired deadline are refused")
	} else {
		r.Notes = append(r.Notes, "plugin: checked that calls cancelled in flight return Canceled and leave the backend serving; the refusal of an already-cancelled context needs the backend in-process (Contract.Backend)")
	}
	// In flight, across the wire: cancelled calls return promptly and leave the backend serving.
	want, err := k.call(ctx, name, 1)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for i := range 5 {
		cctx, cancel := context.WithCancel(ctx)
		go func() { time.Sleep(time.Duration(i) * time.Millisecond); cancel() }()
		_, err := k.be.Infer(cctx, k.cheapRequest(name))
		cancel()
		if err != nil {
			if c := sdk.CodeOf(err); c != sdk.CodeCanceled && c != sdk.CodeDeadlineExceeded && !errors.Is(err, context.Canceled) {
				errs = append(errs, fmt.Errorf("Infer cancelled after %dms: code %v (%v), want Canceled", i, c, err))
			}
		}
	}
	got, err := k.call(ctx, name, 1)
	if err != nil {
		errs = append(errs, fmt.Errorf("a call after cancelled calls: %w", err))
	} else if d := CompareFloat(got, want, []int64{int64(len(want))}, ReloadTol, nil); !d.OK() {
		errs = append(errs, fmt.Errorf("a call after cancelled calls gives other outputs: %v", d))
	}
	return errors.Join(errs...)
}

// cheapRequest is the request of call(ctx, model, 0).
func (k *contractRun) cheapRequest(model string) *sdk.InferRequest {
	if k.c.Task == sdk.TaskCausalLM {
		ids := k.tokens(3, 0)
		return &sdk.InferRequest{Model: model, Inputs: map[string]*sdk.Tensor{"input_ids": sdk.FromInt64([]int64{1, 3}, ids)}}
	}
	return &sdk.InferRequest{Model: model, Params: map[string]string{sdk.ParamTask: sdk.TaskVAEEncode}, Inputs: map[string]*sdk.Tensor{"image": k.vaeImage(0)}}
}

// --- sessions-isolated ---

func (k *contractRun) sessions(ctx context.Context, r *ContractResult) error {
	if k.c.Task != sdk.TaskCausalLM {
		r.Skipped = "task " + k.c.Task + " has no sessions"
		return nil
	}
	name, _, err := k.load(ctx)
	if err != nil {
		return err
	}
	defer k.drop(ctx, name)
	a, b := k.tokens(6, 1), k.tokens(6, 2)
	chunks := [][2]int{{0, 3}, {3, 5}, {5, 6}}
	open := func() (string, error) {
		s, err := k.be.OpenSession(ctx, &sdk.OpenSessionRequest{Model: name, BatchSize: 1})
		if err != nil {
			return "", fmt.Errorf("OpenSession: %w", err)
		}
		return s.Session, nil
	}
	type feed struct {
		sess string
		seq  []int64
	}
	run := func(order []feed, closeFirst bool) ([][]float32, error) {
		outs := make([][]float32, len(order))
		for step := range chunks {
			for i, f := range order {
				if closeFirst && step == len(chunks)-1 && i == 0 {
					// Closing one session must not disturb the other.
					if _, err := k.be.CloseSession(ctx, &sdk.CloseSessionRequest{Session: f.sess}); err != nil {
						return nil, fmt.Errorf("CloseSession: %w", err)
					}
					continue
				}
				c := chunks[step]
				v, _, err := k.lmCall(ctx, name, f.sess, f.seq[c[0]:c[1]], c[0])
				if err != nil {
					return nil, fmt.Errorf("session step %d: %w", step, err)
				}
				outs[i] = append(outs[i], v...)
			}
		}
		return outs, nil
	}
	s1, err := open()
	if err != nil {
		return err
	}
	s2, err := open()
	if err != nil {
		return err
	}
	inter, err := run([]feed{{s1, a}, {s2, b}}, true)
	if err != nil {
		return err
	}
	k.be.CloseSession(ctx, &sdk.CloseSessionRequest{Session: s2})
	var errs []error
	for i, seq := range [][]int64{a, b} {
		s, err := open()
		if err != nil {
			return err
		}
		alone, err := run([]feed{{s, seq}}, false)
		k.be.CloseSession(ctx, &sdk.CloseSessionRequest{Session: s})
		if err != nil {
			return err
		}
		got, want := inter[i], alone[0]
		if len(got) > len(want) {
			got = got[:len(want)]
		}
		want = want[:len(got)]
		if d := CompareFloat(got, want, []int64{int64(len(got))}, ReloadTol, nil); !d.OK() {
			errs = append(errs, fmt.Errorf("session %d interleaved with another differs from the same calls alone: %v", i+1, d))
		}
	}
	r.Notes = append(r.Notes, "two sessions fed 3+2+1 tokens interleaved, the first closed before the last step, against each alone")
	return errors.Join(errs...)
}

// --- unload-frees-memory ---

// heap returns the backend's live heap: the Stats of a plugin, or this process's own heap
// after a GC for an in-process backend.
func (k *contractRun) heap(ctx context.Context) (memory, []sdk.ModelStats, error) {
	st, err := k.be.Stats(ctx, &sdk.StatsRequest{})
	if k.c.Backend != nil {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		var models []sdk.ModelStats
		if err == nil {
			models = st.Models
		}
		return memory{heap: int64(ms.HeapAlloc)}, models, nil
	}
	if err != nil {
		return memory{}, nil, err
	}
	if st.HeapBytes <= 0 {
		return memory{}, st.Models, errors.New("Stats reports no HeapBytes")
	}
	return memory{heap: st.HeapBytes, rss: st.RSSBytes}, st.Models, nil
}

// memory is what heap observed: the Go heap, and the resident set of a plugin process (0 when
// unknown), which also sees memory allocated outside Go (cgo libraries such as ONNX Runtime).
type memory struct{ heap, rss int64 }

func (k *contractRun) unloadCheck(ctx context.Context, r *ContractResult) error {
	if _, _, err := k.heap(ctx); err != nil {
		if sdk.CodeOf(err) == sdk.CodeUnimplemented || strings.Contains(err.Error(), "HeapBytes") {
			r.Skipped = "the plugin implements no Stats with HeapBytes (sdk.StatsReporter), so its memory cannot be observed: " + err.Error()
			return nil
		}
		return fmt.Errorf("Stats: %w", err)
	}
	var after []memory
	var size, rssSize int64
	for cycle := range unloadCycles {
		before, _, err := k.heap(ctx)
		if err != nil {
			return err
		}
		name, _, err := k.load(ctx)
		if err != nil {
			return err
		}
		if _, err := k.call(ctx, name, cycle); err != nil {
			return fmt.Errorf("cycle %d: %w", cycle, err)
		}
		loaded, models, err := k.heap(ctx)
		if err != nil {
			return err
		}
		for _, m := range models {
			if m.Name == name {
				size = max(size, m.WeightBytes)
			}
		}
		size = max(size, loaded.heap-before.heap)
		rssSize = max(rssSize, loaded.rss-before.rss)
		if _, err := k.be.UnloadModel(ctx, &sdk.UnloadModelRequest{Name: name}); err != nil {
			return fmt.Errorf("UnloadModel: %w", err)
		}
		m, models, err := k.heap(ctx)
		if err != nil {
			return err
		}
		for _, ms := range models {
			if ms.Name == name {
				return fmt.Errorf("Stats still lists model %q after UnloadModel", name)
			}
		}
		after = append(after, m)
	}
	first, last := after[0], after[len(after)-1]
	growth := last.heap - first.heap
	limit := int64(leakFraction*float64(size))*(unloadCycles-1) + leakSlack
	r.Notes = append(r.Notes, fmt.Sprintf("model ≈ %d bytes of heap; heap after the first and last of %d unloads: %d, %d; growth %d, limit %d",
		size, unloadCycles, first.heap, last.heap, growth, limit))
	var errs []error
	if growth > limit {
		errs = append(errs, fmt.Errorf("the heap grew by %d bytes over %d load/unload cycles of a model of about %d bytes (limit %d = %.0f%% of the model per cycle + %d): UnloadModel does not free the model",
			growth, unloadCycles, size, limit, leakFraction*100, leakSlack))
	}
	if first.rss > 0 {
		// The resident set is coarse (allocators keep freed pages), so it only has to stop
		// growing by a model's worth per cycle.
		rssGrowth := last.rss - first.rss
		rssLimit := int64(leakFraction*float64(rssSize))*(unloadCycles-1) + rssSlack
		r.Notes = append(r.Notes, fmt.Sprintf("resident set: model ≈ %d bytes; after the first and last unload %d, %d; growth %d, limit %d", rssSize, first.rss, last.rss, rssGrowth, rssLimit))
		if rssGrowth > rssLimit {
			errs = append(errs, fmt.Errorf("the resident set grew by %d bytes over %d load/unload cycles of a model of about %d resident bytes (limit %d): UnloadModel does not free the model's memory",
				rssGrowth, unloadCycles, rssSize, rssLimit))
		}
	}
	return errors.Join(errs...)
}

// --- sequential-calls ---

func (k *contractRun) sequential(ctx context.Context, r *ContractResult) error {
	name, _, err := k.load(ctx)
	if err != nil {
		return err
	}
	defer k.drop(ctx, name)
	st0, statsErr := k.be.Stats(ctx, &sdk.StatsRequest{})
	want, err := k.call(ctx, name, 0)
	if err != nil {
		return err
	}
	mem0, _, memErr := k.heap(ctx)
	for i := range k.c.Calls {
		if k.c.Task == sdk.TaskCausalLM && i%sessionEvery == 0 {
			s, err := k.be.OpenSession(ctx, &sdk.OpenSessionRequest{Model: name, BatchSize: 1})
			if err != nil {
				return fmt.Errorf("call %d: OpenSession: %w", i, err)
			}
			_, _, err = k.lmCall(ctx, name, s.Session, k.tokens(2, i), 0)
			if _, cerr := k.be.CloseSession(ctx, &sdk.CloseSessionRequest{Session: s.Session}); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("call %d (in a session): %w", i, err)
			}
			continue
		}
		got, err := k.call(ctx, name, 0)
		if err != nil {
			return fmt.Errorf("call %d of %d: %w", i, k.c.Calls, err)
		}
		if d := CompareFloat(got, want, []int64{int64(len(want))}, ReloadTol, nil); !d.OK() {
			return fmt.Errorf("call %d of %d: outputs differ from the first call's: %v", i, k.c.Calls, d)
		}
	}
	var errs []error
	if mem1, _, err := k.heap(ctx); err == nil && memErr == nil {
		growth := mem1.heap - mem0.heap
		switch {
		case k.c.Backend == nil:
			// A plugin's Stats may count garbage: report, do not judge.
			r.Notes = append(r.Notes, fmt.Sprintf("plugin heap %d → %d bytes over the calls (not judged: it may include garbage)", mem0.heap, mem1.heap))
		case growth > callLeakLimit:
			errs = append(errs, fmt.Errorf("the live heap grew by %d bytes over %d calls (limit %d): calls leak memory", growth, k.c.Calls, callLeakLimit))
		default:
			r.Notes = append(r.Notes, fmt.Sprintf("live heap %d → %d bytes over the calls (limit +%d)", mem0.heap, mem1.heap, callLeakLimit))
		}
	}
	if h, err := k.be.Health(ctx, &sdk.HealthRequest{}); err != nil || h.Status != "ok" {
		errs = append(errs, fmt.Errorf("Health after %d calls: %+v, %v", k.c.Calls, h, err))
	}
	if k.plugin != nil && k.plugin.Restarts() > 0 {
		errs = append(errs, fmt.Errorf("the plugin process crashed and was restarted %d times during the calls", k.plugin.Restarts()))
	}
	if statsErr == nil {
		st1, err := k.be.Stats(ctx, &sdk.StatsRequest{})
		if err != nil {
			errs = append(errs, fmt.Errorf("Stats after the calls: %w", err))
		} else {
			if st1.OpenSessions != st0.OpenSessions {
				errs = append(errs, fmt.Errorf("Stats: %d open sessions after the calls, %d before: closed sessions are not freed", st1.OpenSessions, st0.OpenSessions))
			}
			if st0.Goroutines > 0 && st1.Goroutines > st0.Goroutines+goroutineSlack {
				errs = append(errs, fmt.Errorf("Stats: %d goroutines after %d calls, %d before (slack %d): calls leak goroutines", st1.Goroutines, k.c.Calls, st0.Goroutines, goroutineSlack))
			}
			r.Notes = append(r.Notes, fmt.Sprintf("open sessions %d → %d, goroutines %d → %d", st0.OpenSessions, st1.OpenSessions, st0.Goroutines, st1.Goroutines))
		}
	} else {
		r.Notes = append(r.Notes, "no Stats: open sessions and goroutines not checked")
	}
	r.Notes = append(r.Notes, fmt.Sprintf("%d calls", k.c.Calls))
	return errors.Join(errs...)
}
