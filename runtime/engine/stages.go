package engine

import (
	"context"
	"fmt"
	"slices"

	"github.com/zclconf/go-cty/cty"

	"github.com/modelrt/modelrt/pipelines"
	"github.com/modelrt/modelrt/runtime/generate"
	"github.com/modelrt/modelrt/runtime/vae"
	"github.com/modelrt/modelrt/sdk"
)

// stageCall is one stage being run: its evaluated arguments (pipelines.EvalStage's map) and
// where its timing goes.
type stageCall struct {
	*run
	s      *pipelines.Stage
	args   map[string]cty.Value
	timing *StageTiming
}

// stageImpl runs one stage type and returns its outputs, keyed as in the catalogue.
type stageImpl func(ctx context.Context, c *stageCall) (map[string]cty.Value, error)

// stageImpls implements every entry of pipelines.Catalogue (a test keeps the two in step).
var stageImpls = map[string]stageImpl{
	"tokenize":      runTokenize,
	"detokenize":    runDetokenize,
	"generate":      runGenerate,
	"image.load":    runImageLoad,
	"image.save":    runImageSave,
	"vae.encode":    runVAEEncode,
	"vae.decode":    runVAEDecode,
	"latent.sample": runLatentSample,
	"infer":         runInfer,
}

// model returns the loaded model an argument (a pipelines.ModelRef) names.
func (c *stageCall) model(arg string) (*Model, error) {
	v := c.args[arg]
	if v.IsNull() || !v.IsKnown() {
		return nil, fmt.Errorf("%s: no model", arg)
	}
	name := v.GetAttr("name").AsString()
	m := c.held[name]
	if m == nil {
		return nil, fmt.Errorf("%w: model %q is not loaded by this engine", ErrUnknown, name)
	}
	return m, nil
}

func (c *stageCall) str(arg string) string { return c.args[arg].AsString() }

// integer returns a whole-number argument; ok is false when it is null. EvalStage has checked
// wholeness and range already.
func (c *stageCall) integer(arg string) (int64, bool) {
	return intVal(c.args[arg])
}

func intVal(v cty.Value) (int64, bool) {
	if v.IsNull() || !v.IsKnown() {
		return 0, false
	}
	n, _ := v.AsBigFloat().Int64()
	return n, true
}

func floatVal(v cty.Value) (float64, bool) {
	if v.IsNull() || !v.IsKnown() {
		return 0, false
	}
	f, _ := v.AsBigFloat().Float64()
	return f, true
}

// tensor returns the payload of a tensor or image argument.
func (c *stageCall) tensor(arg string) (*sdk.Tensor, error) {
	return TensorOf(c.args[arg])
}

// TensorOf returns the *sdk.Tensor inside a tensor or image value (a stage output or a Result
// output).
func TensorOf(v cty.Value) (*sdk.Tensor, error) {
	if v.IsNull() || !v.IsKnown() || !v.Type().IsCapsuleType() {
		return nil, fmt.Errorf("want a tensor or image, have %s", v.Type().FriendlyName())
	}
	t, ok := v.EncapsulatedValue().(*sdk.Tensor)
	if !ok {
		return nil, fmt.Errorf("tensor payload is %T, not an engine tensor", v.EncapsulatedValue())
	}
	return t, nil
}

func tensorVal(t *sdk.Tensor) cty.Value { return cty.CapsuleVal(pipelines.Tensor, t) }
func imageVal(t *sdk.Tensor) cty.Value  { return cty.CapsuleVal(pipelines.Image, t) }

func runTokenize(_ context.Context, c *stageCall) (map[string]cty.Value, error) {
	m, err := c.model("tokenizer")
	if err != nil {
		return nil, err
	}
	tok, err := c.e.Tokenizer(m.Name)
	if err != nil {
		return nil, err
	}
	return map[string]cty.Value{"ids": pipelines.TokenIDsVal(c.e.encode(tok, c.str("text")))}, nil
}

func runDetokenize(_ context.Context, c *stageCall) (map[string]cty.Value, error) {
	m, err := c.model("tokenizer")
	if err != nil {
		return nil, err
	}
	tok, err := c.e.Tokenizer(m.Name)
	if err != nil {
		return nil, err
	}
	ids, err := pipelines.AsTokenIDs(c.args["ids"])
	if err != nil {
		return nil, fmt.Errorf("ids: %w", err)
	}
	return map[string]cty.Value{"text": cty.StringVal(tok.Decode(ids))}, nil
}

// samplingOf turns generate's sampling block (null: greedy) into generate.Sampling. An unset
// seed draws one, so that a block without a seed samples differently on each run.
func samplingOf(v cty.Value) generate.Sampling {
	s := generate.DefaultSampling()
	if v.IsNull() {
		return s
	}
	if f, ok := floatVal(v.GetAttr("temperature")); ok {
		s.Temperature = f
	}
	if n, ok := intVal(v.GetAttr("top_k")); ok {
		s.TopK = int(n)
	}
	if f, ok := floatVal(v.GetAttr("top_p")); ok {
		s.TopP = f
	}
	if f, ok := floatVal(v.GetAttr("repetition_penalty")); ok {
		s.RepetitionPenalty = f
	}
	if n, ok := intVal(v.GetAttr("seed")); ok {
		s.Seed = uint64(n)
	} else {
		s.Seed = randomSeed()
	}
	return s
}

// runGenerate runs the decode loop on the host, one Infer per token through a backend session
// (closed when the stage ends, cancelled or not). ids exclude the end-of-sequence token that
// ended generation, so that detokenizing them gives text without "<|endoftext|>".
func runGenerate(ctx context.Context, c *stageCall) (map[string]cty.Value, error) {
	m, err := c.model("model")
	if err != nil {
		return nil, err
	}
	model := m.lm
	if model == nil {
		return nil, fmt.Errorf("model %q is a %s model; generate needs a causal-lm", m.Name, m.Task)
	}
	var prompt []int
	if v := c.args["input_ids"]; !v.IsNull() {
		ids, err := pipelines.AsTokenIDs(v)
		if err != nil {
			return nil, fmt.Errorf("input_ids: %w", err)
		}
		prompt = ids
	} else {
		tok, err := c.e.Tokenizer(m.Name)
		if err != nil {
			return nil, err
		}
		prompt = c.e.encode(tok, c.str("prompt"))
	}
	if len(prompt) == 0 {
		return nil, sdk.Errorf(sdk.CodeInvalidArgument, "prompt: empty (generation needs at least one token)")
	}
	maxNew, _ := c.integer("max_new_tokens")
	opts := generate.Options{MaxNewTokens: int(maxNew), MaxContext: model.Context, Sampling: samplingOf(c.args["sampling"])}
	if model.EOS >= 0 {
		opts.EOS = []int{model.EOS}
	}
	if v := c.args["stop"]; !v.IsNull() {
		for it := v.ElementIterator(); it.Next(); {
			_, e := it.Element()
			opts.StopStrings = append(opts.StopStrings, e.AsString())
		}
	}
	if tok := m.tok; tok != nil {
		opts.Decoder = tok
		opts.NewStreamDecoder = func() generate.StreamDecoder { return tok.NewStreamDecoder() }
		opts.OnText = func(row int, delta string) { c.obs.OnText(c.s.Name, row, delta) }
	} else if len(opts.StopStrings) > 0 {
		return nil, fmt.Errorf("stop: %w %q: %v", ErrNoTokenizer, m.Name, m.tokErr)
	}
	sess, err := model.OpenStepSession(ctx, 1) // shares steps with the model's other generations
	if err != nil {
		return nil, fmt.Errorf("model %q: open session: %w", m.Name, err)
	}
	defer sess.Close()
	res, err := generate.Generate(ctx, sess, [][]int{prompt}, opts)
	if err != nil {
		return nil, fmt.Errorf("model %q: %w", m.Name, err)
	}
	row := res.Rows[0]
	ids := row.IDs
	if row.FinishReason == generate.FinishEOS && len(ids) > len(prompt) && slices.Contains(opts.EOS, ids[len(ids)-1]) {
		ids = ids[:len(ids)-1]
	}
	c.timing.Generate = &GenerateStats{
		PromptTokens: row.PromptTokens, GeneratedTokens: row.GeneratedTokens,
		PrefillMS: res.PrefillMS, DecodeTokensPerS: res.DecodeTokensPerS, FinishReason: row.FinishReason,
	}
	return map[string]cty.Value{"ids": pipelines.TokenIDsVal(ids), "text": cty.StringVal(row.Text)}, nil
}

// vaeModel returns the VAE an argument names.
func (c *stageCall) vaeModel(arg string) (*vae.Model, error) {
	m, err := c.model(arg)
	if err != nil {
		return nil, err
	}
	if m.vae == nil {
		return nil, fmt.Errorf("%s: model %q is a %s model, not a vae", arg, m.Name, m.Task)
	}
	return m.vae, nil
}

func runVAEEncode(ctx context.Context, c *stageCall) (map[string]cty.Value, error) {
	m, err := c.vaeModel("model")
	if err != nil {
		return nil, err
	}
	img, err := c.tensor("image")
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	if img, err = matchChannels(img, m.InChannels); err != nil {
		return nil, fmt.Errorf("image for model %q: %w", m.Name, err)
	}
	mean, logvar, err := m.Encode(ctx, img)
	if err != nil {
		return nil, err
	}
	return map[string]cty.Value{"mean": tensorVal(mean), "logvar": tensorVal(logvar), "latent": tensorVal(mean)}, nil
}

func runVAEDecode(ctx context.Context, c *stageCall) (map[string]cty.Value, error) {
	m, err := c.vaeModel("model")
	if err != nil {
		return nil, err
	}
	z, err := c.tensor("latent")
	if err != nil {
		return nil, fmt.Errorf("latent: %w", err)
	}
	img, err := m.Decode(ctx, z)
	if err != nil {
		return nil, err
	}
	return map[string]cty.Value{"image": imageVal(img)}, nil
}

// runInfer passes named tensors through any model. A VAE model serves two tasks; the inputs
// say which (sdk.VAETask: "latent" decodes, anything else encodes).
func runInfer(ctx context.Context, c *stageCall) (map[string]cty.Value, error) {
	m, err := c.model("model")
	if err != nil {
		return nil, err
	}
	in := map[string]*sdk.Tensor{}
	v := c.args["inputs"]
	for it := v.ElementIterator(); it.Next(); {
		k, e := it.Element()
		name := k.AsString()
		t, err := tensorArg(e)
		if err != nil {
			return nil, fmt.Errorf("inputs[%q]: %w", name, err)
		}
		in[name] = t
	}
	req := &sdk.InferRequest{Model: m.Name, Inputs: in}
	if m.Task == pipelines.TaskVAE {
		req.Params = map[string]string{sdk.ParamTask: sdk.VAETask(req)}
	}
	r, err := m.backend.plugin.Infer(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("model %q: %w", m.Name, err)
	}
	vals := map[string]cty.Value{}
	for name, t := range r.Outputs {
		vals[name] = tensorVal(t)
	}
	if len(vals) == 0 {
		return map[string]cty.Value{"outputs": cty.MapValEmpty(pipelines.Tensor)}, nil
	}
	return map[string]cty.Value{"outputs": cty.MapVal(vals)}, nil
}

// tensorArg builds the tensor of one infer input: a payload from another stage, or a literal.
func tensorArg(v cty.Value) (*sdk.Tensor, error) {
	a, err := pipelines.DecodeTensorArg(v)
	if err != nil {
		return nil, err
	}
	if a.Payload != nil {
		t, ok := a.Payload.(*sdk.Tensor)
		if !ok {
			return nil, fmt.Errorf("payload is %T, not an engine tensor", a.Payload)
		}
		return t, nil
	}
	n, err := sdk.NumElements(a.Shape, 8)
	if err != nil {
		return nil, err
	}
	if int(n) != len(a.Data) {
		return nil, fmt.Errorf("shape %v needs %d values, have %d", a.Shape, n, len(a.Data))
	}
	switch sdk.DType(a.DType) {
	case sdk.Float32:
		f := make([]float32, n)
		for i, x := range a.Data {
			f[i] = float32(x)
		}
		return sdk.FromFloat32(a.Shape, f), nil
	case sdk.Int64:
		d, err := wholes[int64](a.Data, sdk.Int64)
		if err != nil {
			return nil, err
		}
		return sdk.FromInt64(a.Shape, d), nil
	case sdk.Int32:
		d, err := wholes[int32](a.Data, sdk.Int32)
		if err != nil {
			return nil, err
		}
		return sdk.FromInt32(a.Shape, d), nil
	}
	return nil, fmt.Errorf("dtype %q: literal tensors are float32, int64 or int32", a.DType)
}

// wholes converts a literal tensor's values to T; each must be a whole number that T holds.
func wholes[T int32 | int64](data []float64, dt sdk.DType) ([]T, error) {
	out := make([]T, len(data))
	for i, x := range data {
		out[i] = T(x)
		if float64(out[i]) != x {
			return nil, fmt.Errorf("element %d = %v is not an %s", i, x, dt)
		}
	}
	return out, nil
}
