// Package export turns native model directories (Hugging Face layout, safetensors weights) into
// ONNX graphs with the same weights, so that ONNX Runtime and the native engine can be compared
// on one model.
//
// GPT-2 graphs follow Optimum's cache convention (docs/onnx.md):
//
//	inputs:  input_ids int64 [B,T], attention_mask int64 [B,P+T], position_ids int64 [B,T],
//	         past_key_values.{i}.key|value float32 [B,H,P,D]
//	outputs: logits float32 [B,T,V], present.{i}.key|value float32 [B,H,P+T,D]
package export

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/modelrt/modelrt/onnx/graph"
	"github.com/modelrt/modelrt/onnx/onnxpb"
	"github.com/modelrt/modelrt/sdk/modeldir"
	"github.com/modelrt/modelrt/sdk/safetensors"
)

// ErrUnsupported reports a model configuration the exporter cannot express.
var ErrUnsupported = errors.New("export: unsupported model")

// Options selects the graph variant.
type Options struct {
	// Opset is the default-domain opset: 14 (LayerNorm decomposed into ReduceMean/Sub/Pow/Sqrt/
	// Div) or 17 (one LayerNormalization op). 0 means 14.
	Opset int
	// WithPast adds past_key_values inputs and present outputs (Optimum's cache convention);
	// without it the graph maps input_ids, attention_mask and position_ids to logits only.
	WithPast bool
	// ExternalData forces the weights into model.onnx_data beside model.onnx; they go there
	// anyway above graph.DefaultExternalThreshold.
	ExternalData bool
}

// DefaultOptions is what `modelrt export` uses: opset 14 with the KV cache.
func DefaultOptions() Options { return Options{Opset: 14, WithPast: true} }

// TokenizerFiles are copied beside model.onnx when the source directory has them.
var TokenizerFiles = []string{"vocab.json", "merges.txt", "encoder.json", "vocab.bpe", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"}

// ModelFile is the name of the graph ExportGPT2 writes in its output directory.
const ModelFile = "model.onnx"

// Producer is written into exported models' producer_name.
const Producer = "modelrt-export"

// ExportGPT2 reads a native GPT-2 directory (config.json, model.safetensors with HF
// GPT2LMHeadModel names, tokenizer files) and writes outDir/model.onnx with the same weights,
// plus copies of config.json and the tokenizer files. Progress goes to slog.
func ExportGPT2(srcDir, outDir string, opts Options) error {
	start := time.Now()
	cfg, err := modeldir.LoadGPT2Config(filepath.Join(srcDir, "config.json"))
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	wpath := filepath.Join(srcDir, "model.safetensors")
	st, err := safetensors.Open(wpath)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer st.Close()
	slog.Info("export: building GPT-2 graph", "src", srcDir, "layers", cfg.NLayer, "n_embd", cfg.NEmbd, "heads", cfg.NHead, "vocab", cfg.VocabSize, "opset", opts.opset(), "with_past", opts.WithPast)
	if extra := fmt.Sprintf("h.%d.ln_1.weight", cfg.NLayer); st.Has(extra) || st.Has("transformer."+extra) {
		return fmt.Errorf("export: %s: tensor %s exists but config.json says n_layer=%d", wpath, extra, cfg.NLayer)
	}
	m, err := BuildGPT2(cfg, &safetensorsWeights{f: st}, opts)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	out := filepath.Join(outDir, ModelFile)
	var size int64
	for _, t := range m.Graph.Initializer {
		size += int64(len(t.RawData))
	}
	// A data file left by an earlier external-data export would sit beside an inline model.
	stale := filepath.Join(outDir, graph.ExternalDataName(out))
	if err := os.Remove(stale); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("export: %w", err)
	}
	slog.Info("export: writing", "path", out, "nodes", len(m.Graph.Node), "initializers", len(m.Graph.Initializer), "bytes", size)
	if err := graph.Save(m, out, graph.SaveOptions{External: opts.ExternalData}); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	copied := []string{}
	if same, err := sameDir(srcDir, outDir); err != nil || same {
		// Copying a file onto itself would truncate it.
		slog.Info("export: done", "out", outDir, "elapsed", time.Since(start).Round(time.Millisecond))
		return err
	}
	for _, name := range append([]string{"config.json"}, TokenizerFiles...) {
		ok, err := copyIfExists(filepath.Join(srcDir, name), filepath.Join(outDir, name))
		if err != nil {
			return fmt.Errorf("export: %w", err)
		}
		if ok {
			copied = append(copied, name)
		}
	}
	if err := copyText2Image(srcDir, outDir); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	slog.Info("export: done", "out", outDir, "copied", copied, "elapsed", time.Since(start).Round(time.Millisecond))
	return nil
}

func (o Options) opset() int {
	if o.Opset == 0 {
		return 14
	}
	return o.Opset
}

func sameDir(a, b string) (bool, error) {
	sa, err := os.Stat(a)
	if err != nil {
		return false, fmt.Errorf("export: %w", err)
	}
	sb, err := os.Stat(b)
	if err != nil {
		return false, fmt.Errorf("export: %w", err)
	}
	return os.SameFile(sa, sb), nil
}

// copyIfExists copies src to dst; a missing src is not an error (ok false).
func copyIfExists(src, dst string) (ok bool, err error) {
	in, err := os.Open(src)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return false, err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return false, fmt.Errorf("copy %s: %w", src, err)
	}
	return true, out.Close()
}

// Weights gives the exporter a model's tensors by HF name.
type Weights interface {
	// Tensor returns the tensor's float32 data as little-endian bytes and its shape; the error
	// for a missing tensor wraps safetensors.ErrNotFound.
	Tensor(name string) (raw []byte, shape []int64, err error)
}

// safetensorsWeights serves F32 tensors straight from the file mapping (no copy) and converts
// F16/BF16 ones. GPT-2 checkpoints name tensors with or without the "transformer." prefix.
type safetensorsWeights struct{ f *safetensors.File }

func (w *safetensorsWeights) Tensor(name string) ([]byte, []int64, error) {
	if !w.f.Has(name) {
		if short, ok := strings.CutPrefix(name, "transformer."); ok && w.f.Has(short) {
			name = short
		}
	}
	raw, ti, err := w.f.Raw(name)
	if err != nil {
		return nil, nil, err
	}
	shape := make([]int64, len(ti.Shape))
	for i, d := range ti.Shape {
		shape[i] = int64(d)
	}
	if ti.DType == safetensors.F32 {
		return raw, shape, nil
	}
	vals, _, err := w.f.Float32(name)
	if err != nil {
		return nil, nil, err
	}
	return graph.Float32Bytes(vals), shape, nil
}

// gpt2Graph holds the state of one graph build.
type gpt2Graph struct {
	b     *graph.Builder
	cfg   modeldir.GPT2Config
	w     Weights
	opset int
	// shared constants
	shapeBTHD, shapeBTC string
	consts              map[float32]string
}

// scalar returns the name of a float32 scalar initializer holding v, adding it on first use.
func (g *gpt2Graph) scalar(v float32) string {
	if n, ok := g.consts[v]; ok {
		return n
	}
	n := g.b.Float32(fmt.Sprintf("const_%g", v), nil, []float32{v})
	g.consts[v] = n
	return n
}

// weight adds HF tensor name as an initializer after checking its shape.
func (g *gpt2Graph) weight(name string, want ...int64) (string, error) {
	raw, shape, err := g.w.Tensor(name)
	if err != nil {
		return "", fmt.Errorf("export: weight %s: %w", name, err)
	}
	if !slices.Equal(shape, want) {
		return "", fmt.Errorf("export: weight %s has shape %v, config says %v", name, shape, want)
	}
	return g.b.Tensor(name, graph.Float, shape, raw), nil
}

// BuildGPT2 builds the GPT-2 graph for cfg (as native/gpt2 reads config.json) with weights w
// (HF GPT2LMHeadModel names).
func BuildGPT2(cfg modeldir.GPT2Config, w Weights, opts Options) (*onnxpb.ModelProto, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("export: config: %w", err)
	}
	op := opts.opset()
	if op != 14 && op != 17 {
		return nil, fmt.Errorf("%w: opset %d (want 14 or 17)", ErrUnsupported, op)
	}
	b := graph.New("gpt2")
	g := &gpt2Graph{b: b, cfg: cfg, w: w, opset: op, consts: map[float32]string{}}
	C, H, V := int64(cfg.NEmbd), int64(cfg.NHead), int64(cfg.VocabSize)
	D := C / H

	const batch, seq, past, total = "batch_size", "sequence_length", "past_sequence_length", "past_sequence_length + sequence_length"
	ids := b.Input("input_ids", graph.Int64, batch, seq)
	mask := b.Input("attention_mask", graph.Int64, batch, total)
	pos := b.Input("position_ids", graph.Int64, batch, seq)
	b.Output("logits", graph.Float, batch, seq, V) // first, as Optimum orders outputs
	var pastKV [][2]string
	if opts.WithPast {
		for i := 0; i < cfg.NLayer; i++ {
			k := b.Input(fmt.Sprintf("past_key_values.%d.key", i), graph.Float, batch, H, past, D)
			v := b.Input(fmt.Sprintf("past_key_values.%d.value", i), graph.Float, batch, H, past, D)
			pastKV = append(pastKV, [2]string{k, v})
		}
	}

	g.shapeBTHD = b.Ints("shape_bthd", 0, 0, H, D) // Reshape: 0 copies the input's dim
	g.shapeBTC = b.Ints("shape_btc", 0, 0, C)

	wte, err := g.weight("transformer.wte.weight", V, C)
	if err != nil {
		return nil, err
	}
	wpe, err := g.weight("transformer.wpe.weight", int64(cfg.NPositions), C)
	if err != nil {
		return nil, err
	}
	b.Prefix = "/embed/"
	x := b.Node("Add", []string{b.Node("Gather", []string{wte, ids}), b.Node("Gather", []string{wpe, pos})})

	b.Prefix = "/mask/"
	allowed, fill := g.attentionMask(ids, mask)

	for i := 0; i < cfg.NLayer; i++ {
		start := time.Now()
		var lp, present [2]string
		if opts.WithPast {
			lp = pastKV[i]
			for j, kind := range []string{"key", "value"} {
				present[j] = fmt.Sprintf("present.%d.%s", i, kind)
				b.Output(present[j], graph.Float, batch, H, total, D)
			}
		}
		if x, err = g.block(i, x, allowed, fill, lp, present); err != nil {
			return nil, err
		}
		slog.Debug("export: layer built", "layer", i, "elapsed", time.Since(start))
	}

	b.Prefix = "/ln_f/"
	x, err = g.layerNorm("transformer.ln_f", x)
	if err != nil {
		return nil, err
	}
	b.Prefix = "/lm_head/"
	head, err := g.lmHead(wte)
	if err != nil {
		return nil, err
	}
	// logits = x · headᵀ. The transpose runs in the graph (ORT folds it at load) so that a tied
	// wte is stored once.
	headT := b.Node("Transpose", []string{head}, graph.IntList("perm", 1, 0))
	b.NodeTo("MatMul", []string{x, headT}, []string{"logits"})

	return b.Model(graph.ModelOptions{
		Opset:        int64(op),
		ProducerName: Producer,
		DocString:    "GPT-2 exported by modelrt (onnx/export); Optimum cache convention; see docs/onnx.md",
	}), nil
}

// lmHead returns the output projection [V,C]: wte, unless the checkpoint has an lm_head.weight
// that differs from it (native/gpt2 uses lm_head.weight whenever present; identical bytes are
// stored once).
func (g *gpt2Graph) lmHead(wte string) (string, error) {
	raw, _, err := g.w.Tensor("lm_head.weight")
	if errors.Is(err, safetensors.ErrNotFound) {
		return wte, nil
	}
	if err != nil {
		return "", fmt.Errorf("export: weight lm_head.weight: %w", err)
	}
	wteRaw, _, err := g.w.Tensor("transformer.wte.weight")
	if err != nil {
		return "", fmt.Errorf("export: weight transformer.wte.weight: %w", err)
	}
	if bytes.Equal(raw, wteRaw) {
		return wte, nil
	}
	return g.weight("lm_head.weight", int64(g.cfg.VocabSize), int64(g.cfg.NEmbd))
}

// attentionMask builds, once for all layers, the two [B,1,T,P+T] tensors that layers apply to
// their scores with scores' = Where(allowed, scores, fill):
//
//	causal[i,j]  = j ≤ P+i                      (query i sits at absolute position P+i)
//	allowed      = causal ∧ attention_mask[b,j] ≠ 0
//	fill         = 0 where causal and row i has no allowed key, float32 min elsewhere
//
// The middle case is Hugging Face's eager attention on a left-padding query: all of its scores
// are finfo.min, so the softmax is uniform over the causally visible keys.
func (g *gpt2Graph) attentionMask(ids, mask string) (allowed, fill string) {
	b := g.b
	idx1 := b.Int64("index_1", nil, []int64{1})
	zeroI := b.Int64("zero_i64", nil, []int64{0})
	oneI := b.Int64("one_i64", nil, []int64{1})
	T := b.Node("Gather", []string{b.Node("Shape", []string{ids}), idx1}, graph.Int("axis", 0))  // scalar
	S := b.Node("Gather", []string{b.Node("Shape", []string{mask}), idx1}, graph.Int("axis", 0)) // scalar P+T
	P := b.Node("Sub", []string{S, T})
	qpos := b.Node("Unsqueeze", []string{b.Node("Range", []string{P, S, oneI}), b.Ints("axes_1", 1)})                                                                    // [T,1]
	kpos := b.Node("Unsqueeze", []string{b.Node("Range", []string{zeroI, S, oneI}), b.Ints("axes_0", 0)})                                                                // [1,S]
	causal := b.Node("Unsqueeze", []string{b.Node("LessOrEqual", []string{kpos, qpos}), b.Ints("axes_01", 0, 1)})                                                        // [1,1,T,S]
	keys := b.Node("Unsqueeze", []string{b.Node("Cast", []string{mask}, graph.Int("to", int64(graph.Bool))), b.Ints("axes_12", 1, 2)})                                   // [B,1,1,S]
	allowed = b.Node("And", []string{causal, keys})                                                                                                                      // [B,1,T,S]
	anyKey := b.Node("ReduceMax", []string{b.Node("Cast", []string{allowed}, graph.Int("to", int64(graph.Float)))}, graph.IntList("axes", -1), graph.Int("keepdims", 1)) // [B,1,T,1]
	none := b.Node("Not", []string{b.Node("Cast", []string{anyKey}, graph.Int("to", int64(graph.Bool)))})
	uniform := b.Node("And", []string{none, causal}) // [B,1,T,S]
	minF := b.Float32("float32_min", nil, []float32{-math.MaxFloat32})
	fill = b.Node("Where", []string{uniform, g.scalar(0), minF})
	return allowed, fill
}

// layerNorm applies HF LayerNorm over the last axis with gain prefix.weight and bias
// prefix.bias: y = (x - mean) / sqrt(var + eps) · γ + β, var the biased variance.
// x: (B,T,C).
func (g *gpt2Graph) layerNorm(prefix, x string) (string, error) {
	C := int64(g.cfg.NEmbd)
	eps := float32(g.cfg.LayerNormEpsilon)
	gamma, err := g.weight(prefix+".weight", C)
	if err != nil {
		return "", err
	}
	beta, err := g.weight(prefix+".bias", C)
	if err != nil {
		return "", err
	}
	b := g.b
	if g.opset >= 17 {
		return b.Node("LayerNormalization", []string{x, gamma, beta}, graph.Int("axis", -1), graph.FloatAttr("epsilon", eps)), nil
	}
	axes := graph.IntList("axes", -1)
	mean := b.Node("ReduceMean", []string{x}, axes)
	d := b.Node("Sub", []string{x, mean})
	variance := b.Node("ReduceMean", []string{b.Node("Pow", []string{d, g.scalar(2)})}, axes)
	std := b.Node("Sqrt", []string{b.Node("Add", []string{variance, g.scalar(eps)})})
	y := b.Node("Div", []string{d, std})
	return b.Node("Add", []string{b.Node("Mul", []string{y, gamma}), beta}), nil
}

// conv1D applies HF Conv1D: y = x · W + b with W stored [in,out]. x: (B,T,in) → (B,T,out).
func (g *gpt2Graph) conv1D(prefix, x string, in, out int64) (string, error) {
	w, err := g.weight(prefix+".weight", in, out)
	if err != nil {
		return "", err
	}
	bias, err := g.weight(prefix+".bias", out)
	if err != nil {
		return "", err
	}
	return g.b.Node("Add", []string{g.b.Node("MatMul", []string{x, w}), bias}), nil
}

// gelu applies gelu_new (= gelu_pytorch_tanh): 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
func (g *gpt2Graph) gelu(x string) string {
	b := g.b
	cube := b.Node("Pow", []string{x, g.scalar(3)})
	t := b.Node("Add", []string{x, b.Node("Mul", []string{g.scalar(0.044715), cube})})
	inner := b.Node("Tanh", []string{b.Node("Mul", []string{g.scalar(float32(math.Sqrt(2 / math.Pi))), t})})
	return b.Node("Mul", []string{b.Node("Mul", []string{g.scalar(0.5), x}), b.Node("Add", []string{g.scalar(1), inner})})
}

// block is one transformer layer: x += attn(ln_1(x)); x += mlp(ln_2(x)). x: (B,T,C); past
// key/value (B,H,P,D) or empty names for no cache, in which case present names the graph
// outputs that receive past‖new (B,H,P+T,D).
func (g *gpt2Graph) block(i int, x, allowed, fill string, past, present [2]string) (string, error) {
	b := g.b
	cfg := g.cfg
	C, H := int64(cfg.NEmbd), int64(cfg.NHead)
	D := C / H
	p := fmt.Sprintf("transformer.h.%d", i)

	b.Prefix = fmt.Sprintf("/h.%d/ln_1/", i)
	h, err := g.layerNorm(p+".ln_1", x)
	if err != nil {
		return "", err
	}
	b.Prefix = fmt.Sprintf("/h.%d/attn/", i)
	qkv, err := g.conv1D(p+".attn.c_attn", h, C, 3*C)
	if err != nil {
		return "", err
	}
	parts := b.NodeN("Split", []string{qkv}, 3, graph.Int("axis", 2)) // equal thirds: q, k, v (B,T,C)
	heads := func(t string) string {                                  // (B,T,C) → (B,H,T,D)
		return b.Node("Transpose", []string{b.Node("Reshape", []string{t, g.shapeBTHD})}, graph.IntList("perm", 0, 2, 1, 3))
	}
	q, k, v := heads(parts[0]), heads(parts[1]), heads(parts[2])
	if past[0] != "" {
		b.NodeTo("Concat", []string{past[0], k}, []string{present[0]}, graph.Int("axis", 2))
		b.NodeTo("Concat", []string{past[1], v}, []string{present[1]}, graph.Int("axis", 2))
		k, v = present[0], present[1]
	}
	// scores = q·kᵀ / √D (B,H,T,P+T); Div, not Mul by 1/√D, as HF does.
	scores := b.Node("MatMul", []string{q, b.Node("Transpose", []string{k}, graph.IntList("perm", 0, 1, 3, 2))})
	scores = b.Node("Div", []string{scores, g.scalar(float32(math.Sqrt(float64(D))))})
	probs := b.Node("Softmax", []string{b.Node("Where", []string{allowed, scores, fill})}, graph.Int("axis", -1))
	y := b.Node("MatMul", []string{probs, v}) // (B,H,T,D)
	y = b.Node("Reshape", []string{b.Node("Transpose", []string{y}, graph.IntList("perm", 0, 2, 1, 3)), g.shapeBTC})
	a, err := g.conv1D(p+".attn.c_proj", y, C, C)
	if err != nil {
		return "", err
	}
	x = b.Node("Add", []string{x, a})

	b.Prefix = fmt.Sprintf("/h.%d/ln_2/", i)
	h, err = g.layerNorm(p+".ln_2", x)
	if err != nil {
		return "", err
	}
	b.Prefix = fmt.Sprintf("/h.%d/mlp/", i)
	inner := int64(cfg.Inner())
	m, err := g.conv1D(p+".mlp.c_fc", h, C, inner)
	if err != nil {
		return "", err
	}
	m, err = g.conv1D(p+".mlp.c_proj", g.gelu(m), inner, C)
	if err != nil {
		return "", err
	}
	return b.Node("Add", []string{x, m}), nil
}
