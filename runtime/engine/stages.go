package engine

import (
	"context"
	"fmt"
	"slices"

	"github.com/zclconf/go-cty/cty"

	"github.com/modelrt/modelrt/pipelines"
	"github.com/modelrt/modelrt/runtime/generate"
	"github.com/modelrt/modelrt/runtime/lm"
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
	m := c.e.models[name]
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

func intsOf(ids []int64) []int {
	out := make([]int, len(ids))
	for i, id := range ids {
		out[i] = int(id)
	}
	return out
}

func int64sOf(ids []int) []int64 {
	out := make([]int64, len(ids))
	for i, id := range ids {
		out[i] = int64(id)
	}
	return out
}

func runTokenize(_ context.Context, c *stageCall) (map[string]cty.Value, error) {
	m, err := c.model("tokenizer")
	if err != nil {
		return nil, err
	}
	tok, err := c.e.Tokenizer(m.Name)
	if err != nil {
		return nil, err
	}
	return map[string]cty.Value{"ids": pipelines.TokenIDsVal(int64sOf(tok.Encode(c.str("text"))))}, nil
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
	return map[string]cty.Value{"text": cty.StringVal(tok.Decode(intsOf(ids)))}, nil
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
	model, err := lm.FromInfo(m.backend.plugin, m.Info)
	if err != nil {
		return nil, err
	}
	var prompt []int
	if v := c.args["input_ids"]; !v.IsNull() {
		ids, err := pipelines.AsTokenIDs(v)
		if err != nil {
			return nil, fmt.Errorf("input_ids: %w", err)
		}
		prompt = intsOf(ids)
	} else {
		tok, err := c.e.Tokenizer(m.Name)
		if err != nil {
			return nil, err
		}
		prompt = tok.Encode(c.str("prompt"))
	}
	if len(prompt) == 0 {
		return nil, fmt.Errorf("empty prompt: generation needs at least one token")
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
	sess, err := model.Open(ctx, 1)
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
	return map[string]cty.Value{"ids": pipelines.TokenIDsVal(int64sOf(ids)), "text": cty.StringVal(row.Text)}, nil
}

// infer calls a model's backend and returns the named outputs.
func infer(ctx context.Context, m *Model, task string, inputs map[string]*sdk.Tensor) (map[string]*sdk.Tensor, error) {
	req := &sdk.InferRequest{Model: m.Name, Inputs: inputs}
	if task != "" {
		req.Params = map[string]string{sdk.ParamTask: task}
	}
	r, err := m.backend.plugin.Infer(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("model %q: %w", m.Name, err)
	}
	return r.Outputs, nil
}

func output(m *Model, outs map[string]*sdk.Tensor, name string) (*sdk.Tensor, error) {
	t, ok := outs[name]
	if !ok {
		return nil, fmt.Errorf("model %q returned no %q (it returned %s)", m.Name, name, sdk.InputNames(outs))
	}
	return t, nil
}

func runVAEEncode(ctx context.Context, c *stageCall) (map[string]cty.Value, error) {
	m, err := c.model("model")
	if err != nil {
		return nil, err
	}
	img, err := c.tensor("image")
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	if f, ok, _ := m.metaInt("downsample_factor"); ok && f > 1 && len(img.Shape) == 4 &&
		(img.Shape[2]%int64(f) != 0 || img.Shape[3]%int64(f) != 0) {
		return nil, fmt.Errorf("image of %dx%d: the VAE %q needs height and width divisible by %d (resize it first)", img.Shape[3], img.Shape[2], m.Name, f)
	}
	if ch, ok, _ := m.metaInt("in_channels"); ok {
		if img, err = matchChannels(img, ch); err != nil {
			return nil, fmt.Errorf("image for model %q: %w", m.Name, err)
		}
	}
	if err := checkVAEInput(m, sdk.TaskVAEEncode, img); err != nil {
		return nil, err
	}
	outs, err := infer(ctx, m, sdk.TaskVAEEncode, map[string]*sdk.Tensor{"image": img})
	if err != nil {
		return nil, err
	}
	mean, err := output(m, outs, "mean")
	if err != nil {
		return nil, err
	}
	logvar, err := output(m, outs, "logvar")
	if err != nil {
		return nil, err
	}
	return map[string]cty.Value{"mean": tensorVal(mean), "logvar": tensorVal(logvar), "latent": tensorVal(mean)}, nil
}

func runVAEDecode(ctx context.Context, c *stageCall) (map[string]cty.Value, error) {
	m, err := c.model("model")
	if err != nil {
		return nil, err
	}
	z, err := c.tensor("latent")
	if err != nil {
		return nil, fmt.Errorf("latent: %w", err)
	}
	if err := checkVAEInput(m, sdk.TaskVAEDecode, z); err != nil {
		return nil, err
	}
	outs, err := infer(ctx, m, sdk.TaskVAEDecode, map[string]*sdk.Tensor{"latent": z})
	if err != nil {
		return nil, err
	}
	img, err := output(m, outs, "image")
	if err != nil {
		return nil, err
	}
	return map[string]cty.Value{"image": imageVal(img)}, nil
}

// runInfer passes named tensors through any model. A VAE model serves two tasks; the inputs
// say which ("image": encode, "latent": decode).
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
	task := ""
	if m.Task == pipelines.TaskVAE {
		task = sdk.TaskVAEDecode
		if _, ok := in["image"]; ok {
			task = sdk.TaskVAEEncode
		}
	}
	outs, err := infer(ctx, m, task, in)
	if err != nil {
		return nil, err
	}
	vals := map[string]cty.Value{}
	for name, t := range outs {
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
		d := make([]int64, n)
		for i, x := range a.Data {
			d[i] = int64(x)
			if float64(d[i]) != x {
				return nil, fmt.Errorf("element %d = %v is not an int64", i, x)
			}
		}
		return sdk.FromInt64(a.Shape, d), nil
	case sdk.Int32:
		d := make([]int32, n)
		for i, x := range a.Data {
			d[i] = int32(x)
			if float64(d[i]) != x {
				return nil, fmt.Errorf("element %d = %v is not an int32", i, x)
			}
		}
		return sdk.FromInt32(a.Shape, d), nil
	}
	return nil, fmt.Errorf("dtype %q: literal tensors are float32, int64 or int32", a.DType)
}
