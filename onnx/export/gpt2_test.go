//go:build cgo

package export_test

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/modelrt/modelrt/native/gpt2"
	"github.com/modelrt/modelrt/onnx"
	"github.com/modelrt/modelrt/onnx/export"
	"github.com/modelrt/modelrt/onnx/graph"
	"github.com/modelrt/modelrt/onnx/internal/orttest"
	"github.com/modelrt/modelrt/sdk/safetensors"
)

// logitsAbsTol is the largest absolute logit difference accepted between the exported graph in
// ONNX Runtime and the PyTorch reference (or between two runs of the graph): float32 with
// differently ordered sums.
const logitsAbsTol = 1e-4

// fixtureDirs are the GPT-2 fixtures of testdata/models (scripts/fixtures/gpt2_fixtures.py).
var fixtureDirs = []string{"gpt2-odd", "gpt2-bf16", "gpt2-tiny"}

// fixture returns a fixture's directory, config and reference.
func fixture(t *testing.T, name string) (string, gpt2.Config, *reference) {
	t.Helper()
	dir := filepath.Join("..", "..", "testdata", "models", name)
	if _, err := os.Stat(filepath.Join(dir, "reference.safetensors")); err != nil {
		t.Fatalf("fixture %s is missing (regenerate with /usr/bin/python3 scripts/fixtures/gpt2_fixtures.py): %v", name, err)
	}
	cfg, err := gpt2.LoadConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	return dir, cfg, readReference(t, dir)
}

// reference holds a fixture's inputs and PyTorch logits.
type reference struct {
	ids, mask, pos []int64 // [B,T]
	B, T           int
	logits         []float32 // [B,T,V]
	greedy         []int64   // prompt then 8 argmax tokens
}

func readReference(t *testing.T, dir string) *reference {
	t.Helper()
	f, err := safetensors.Open(filepath.Join(dir, "reference.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := &reference{}
	var shape []int
	if r.ids, shape, err = f.Int64("input_ids"); err != nil {
		t.Fatal(err)
	}
	r.B, r.T = shape[0], shape[1]
	if r.mask, _, err = f.Int64("attention_mask"); err != nil {
		t.Fatal(err)
	}
	if r.logits, _, err = f.Float32("logits"); err != nil {
		t.Fatal(err)
	}
	if r.greedy, _, err = f.Int64("greedy_ids"); err != nil {
		t.Fatal(err)
	}
	r.pos = positionIDs(r.mask, r.B, r.T)
	return r
}

// positionIDs follows HF generate: cumsum(mask)-1, and 1 where the mask is 0.
func positionIDs(mask []int64, B, T int) []int64 {
	pos := make([]int64, B*T)
	for b := 0; b < B; b++ {
		var c int64
		for j := 0; j < T; j++ {
			c += mask[b*T+j]
			pos[b*T+j] = c - 1
			if mask[b*T+j] == 0 {
				pos[b*T+j] = 1
			}
		}
	}
	return pos
}

// graphIO lists a graph's input and output names (from the model file, not assumed).
func graphIO(t testing.TB, path string) (ins, outs []string) {
	t.Helper()
	m, err := onnx.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	s := m.Summary()
	for _, v := range s.Inputs {
		ins = append(ins, v.Name)
	}
	for _, v := range s.Outputs {
		outs = append(outs, v.Name)
	}
	return ins, outs
}

// lm runs a GPT-2 graph with Optimum's names; dims from the config.
type lm struct {
	s          *ort.DynamicAdvancedSession
	ins, outs  []string
	layers     int
	heads, hd  int64
	vocab      int
	withPast   bool
	positionIn bool
}

func openLM(t *testing.T, path string, cfg gpt2.Config) *lm {
	t.Helper()
	ins, outs := graphIO(t, path)
	l := &lm{ins: ins, outs: outs, layers: cfg.NLayer, heads: int64(cfg.NHead), hd: int64(cfg.NEmbd / cfg.NHead), vocab: cfg.VocabSize}
	for _, n := range ins {
		switch n {
		case "past_key_values.0.key":
			l.withPast = true
		case "position_ids":
			l.positionIn = true
		}
	}
	l.s = orttest.Session(t, path, ins, outs)
	return l
}

// kv is one layer's cache, [B,H,P,D] each.
type kv struct{ k, v []float32 }

// run feeds ids/pos [B,T], mask [B,P+T] and the past (P = 0 with nil past) and returns logits
// [B,T,V] and, for a cache graph, the presents.
func (l *lm) run(t *testing.T, B, T int, ids, mask, pos []int64, past []kv) ([]float32, []kv) {
	t.Helper()
	P := len(mask)/B - T
	var inputs []ort.Value
	for _, name := range l.ins {
		switch name {
		case "input_ids":
			inputs = append(inputs, orttest.Tensor(t, []int64{int64(B), int64(T)}, ids))
		case "attention_mask":
			inputs = append(inputs, orttest.Tensor(t, []int64{int64(B), int64(P + T)}, mask))
		case "position_ids":
			inputs = append(inputs, orttest.Tensor(t, []int64{int64(B), int64(T)}, pos))
		default:
			var layer int
			var kind string
			if _, err := fmt.Sscanf(name, "past_key_values.%d.%s", &layer, &kind); err != nil {
				t.Fatalf("unexpected graph input %q", name)
			}
			data := []float32{}
			if past != nil {
				data = past[layer].k
				if kind == "value" {
					data = past[layer].v
				}
			}
			inputs = append(inputs, orttest.Tensor(t, []int64{int64(B), l.heads, int64(P), l.hd}, data))
		}
	}
	outs := orttest.Run(t, l.s, inputs, len(l.outs))
	var logits []float32
	presents := make([]kv, l.layers)
	for i, name := range l.outs {
		data := outs[i].(*ort.Tensor[float32]).GetData()
		switch name {
		case "logits":
			logits = data
		default:
			var layer int
			var kind string
			if _, err := fmt.Sscanf(name, "present.%d.%s", &layer, &kind); err != nil {
				t.Fatalf("unexpected graph output %q", name)
			}
			if kind == "key" {
				presents[layer].k = data
			} else {
				presents[layer].v = data
			}
		}
	}
	if len(logits) != B*T*l.vocab {
		t.Fatalf("logits has %d values, want %d", len(logits), B*T*l.vocab)
	}
	return logits, presents
}

// compareFloats fails t when |got-want| > tol anywhere; it prints max abs/rel error and the first
// mismatching indices.
func compareFloats(t *testing.T, what string, got, want []float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	var maxAbs, maxRel float64
	var bad []string
	for i := range want {
		d := math.Abs(float64(got[i]) - float64(want[i]))
		if math.IsNaN(d) {
			d = math.Inf(1)
		}
		maxAbs = max(maxAbs, d)
		if w := math.Abs(float64(want[i])); w > 0 {
			maxRel = max(maxRel, d/w)
		}
		if d > tol && len(bad) < 5 {
			bad = append(bad, fmt.Sprintf("[%d] got %g want %g", i, got[i], want[i]))
		}
	}
	if len(bad) > 0 {
		t.Errorf("%s: max abs err %.3g (tol %g), max rel err %.3g; first mismatches: %v", what, maxAbs, tol, maxRel, bad)
	} else {
		t.Logf("%s: max abs err %.3g, max rel err %.3g", what, maxAbs, maxRel)
	}
}

func exportTo(t *testing.T, src string, opts export.Options) string {
	t.Helper()
	out := t.TempDir()
	if err := export.ExportGPT2(src, out, opts); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(out, export.ModelFile)
}

// TestExportMatchesPyTorch runs every fixture through every variant in one pass (P = 0 for the
// cache graph) and holds the logits to the PyTorch reference.
func TestExportMatchesPyTorch(t *testing.T) {
	orttest.Init(t)
	for _, name := range fixtureDirs {
		dir, cfg, ref := fixture(t, name)
		for _, opset := range []int{14, 17} {
			for _, withPast := range []bool{false, true} {
				opts := export.Options{Opset: opset, WithPast: withPast}
				t.Run(fmt.Sprintf("%s/opset%d/past=%v", name, opset, withPast), func(t *testing.T) {
					l := openLM(t, exportTo(t, dir, opts), cfg)
					if l.withPast != withPast || !l.positionIn {
						t.Fatalf("graph inputs %v: want past=%v and position_ids", l.ins, withPast)
					}
					logits, presents := l.run(t, ref.B, ref.T, ref.ids, ref.mask, ref.pos, nil)
					compareFloats(t, "logits", logits, ref.logits, logitsAbsTol)
					if withPast {
						want := ref.B * int(l.heads) * ref.T * int(l.hd)
						for i, p := range presents {
							if len(p.k) != want || len(p.v) != want {
								t.Errorf("present.%d: %d/%d values, want %d", i, len(p.k), len(p.v), want)
							}
						}
					}
				})
			}
		}
	}
}

// TestExportCacheSteps prefills a prefix, then decodes one token at a time feeding presents back
// as past, and compares each step's logits with the full pass over the whole sequence (the
// padded row included).
func TestExportCacheSteps(t *testing.T) {
	orttest.Init(t)
	dir, cfg, ref := fixture(t, "gpt2-odd")
	for _, opset := range []int{14, 17} {
		t.Run(fmt.Sprintf("opset%d", opset), func(t *testing.T) {
			l := openLM(t, exportTo(t, dir, export.Options{Opset: opset, WithPast: true}), cfg)
			B, T, V := ref.B, ref.T, cfg.VocabSize
			cols := func(x []int64, from, to int) []int64 {
				var out []int64
				for b := 0; b < B; b++ {
					out = append(out, x[b*T+from:b*T+to]...)
				}
				return out
			}
			for _, prefix := range []int{1, 3} {
				logits, past := l.run(t, B, prefix, cols(ref.ids, 0, prefix), cols(ref.mask, 0, prefix), cols(ref.pos, 0, prefix), nil)
				for b := 0; b < B; b++ {
					compareFloats(t, fmt.Sprintf("prefill %d row %d", prefix, b), logits[b*prefix*V:(b+1)*prefix*V], ref.logits[b*T*V:b*T*V+prefix*V], logitsAbsTol)
				}
				for p := prefix; p < T; p++ {
					logits, past = l.run(t, B, 1, cols(ref.ids, p, p+1), cols(ref.mask, 0, p+1), cols(ref.pos, p, p+1), past)
					for b := 0; b < B; b++ {
						compareFloats(t, fmt.Sprintf("prefix %d step %d row %d", prefix, p, b), logits[b*V:(b+1)*V], ref.logits[(b*T+p)*V:(b*T+p+1)*V], logitsAbsTol)
					}
				}
			}
		})
	}
}

// TestExportGreedy decodes with the cache, greedily, and must reproduce the reference tokens.
func TestExportGreedy(t *testing.T) {
	orttest.Init(t)
	for _, name := range fixtureDirs {
		dir, cfg, ref := fixture(t, name)
		l := openLM(t, exportTo(t, dir, export.DefaultOptions()), cfg)
		const newTokens = 8
		prompt := ref.greedy[:len(ref.greedy)-newTokens]
		ids := append([]int64(nil), prompt...)
		var past []kv
		in, pos0 := prompt, int64(0)
		for len(ids) < len(ref.greedy) {
			T := len(in)
			mask := make([]int64, len(ids))
			pos := make([]int64, T)
			for i := range mask {
				mask[i] = 1
			}
			for i := range pos {
				pos[i] = pos0 + int64(i)
			}
			var logits []float32
			logits, past = l.run(t, 1, T, in, mask, pos, past)
			last := logits[(T-1)*cfg.VocabSize:]
			best := 0
			for i, v := range last {
				if v > last[best] {
					best = i
				}
			}
			ids = append(ids, int64(best))
			in, pos0 = []int64{int64(best)}, pos0+int64(T)
		}
		for i := range ids {
			if ids[i] != ref.greedy[i] {
				t.Errorf("%s: greedy ids %v, want %v (first difference at %d)", name, ids, ref.greedy, i)
				break
			}
		}
	}
}

// mk makes a tensor that the caller destroys (orttest.Tensor would keep every benchmark step's
// tensors until the end).
func mk[T ort.TensorData](b *testing.B, shape []int64, data []T) ort.Value {
	t, err := ort.NewTensor(ort.NewShape(shape...), data)
	if err != nil {
		b.Fatal(err)
	}
	return t
}

// BenchmarkGPT2124MDecode runs a GPT-2 124M-shaped random model exported by BuildGPT2 in ONNX
// Runtime with 2 threads: a 64-token prefill, then one token per iteration with the cache
// (reported as tokens/s). The cache is restarted every 256 tokens.
func BenchmarkGPT2124MDecode(b *testing.B) {
	for _, opset := range []int{14, 17} {
		b.Run(fmt.Sprintf("opset%d", opset), func(b *testing.B) { benchDecode(b, opset) })
	}
}

func benchDecode(b *testing.B, opset int) {
	orttest.Init(b)
	cfg := gpt2.Config{VocabSize: 50257, NPositions: 1024, NEmbd: 768, NLayer: 12, NHead: 12, LayerNormEpsilon: 1e-5, ActivationFunction: "gelu_new", BOSTokenID: 50256, EOSTokenID: 50256}
	m, err := export.BuildGPT2(cfg, export.RandomWeights(cfg, 1), export.Options{Opset: opset, WithPast: true})
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "model.onnx")
	if err := graph.Save(m, path, graph.SaveOptions{}); err != nil {
		b.Fatal(err)
	}
	o := orttest.Options(b)
	defer o.Destroy()
	if err := o.SetIntraOpNumThreads(2); err != nil {
		b.Fatal(err)
	}
	ins, outs := graphIO(b, path)
	s, err := ort.NewDynamicAdvancedSession(path, ins, outs, o)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Destroy()
	const prompt, maxLen = 64, 320
	step := func(ids []int64, total int, past []ort.Value) []ort.Value {
		T := len(ids)
		mask := make([]int64, total)
		pos := make([]int64, T)
		for i := range mask {
			mask[i] = 1
		}
		for i := range pos {
			pos[i] = int64(total - T + i)
		}
		in := []ort.Value{mk(b, []int64{1, int64(T)}, ids), mk(b, []int64{1, int64(total)}, mask), mk(b, []int64{1, int64(T)}, pos)}
		for l := 0; l < 2*cfg.NLayer; l++ {
			if past == nil {
				in = append(in, mk(b, []int64{1, 12, 0, 64}, []float32{}))
			} else {
				in = append(in, past[1+l])
			}
		}
		out := make([]ort.Value, len(outs))
		if err := s.Run(in, out); err != nil {
			b.Fatal(err)
		}
		for _, v := range in {
			v.Destroy()
		}
		out[0].Destroy()
		return out
	}
	ids := make([]int64, prompt)
	past := step(ids, prompt, nil)
	total := prompt
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if total == maxLen {
			b.StopTimer()
			for _, v := range past[1:] {
				v.Destroy()
			}
			past, total = step(ids, prompt, nil), prompt
			b.StartTimer()
		}
		total++
		past = step([]int64{int64(i % 50257)}, total, past)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
	for _, v := range past[1:] {
		v.Destroy()
	}
}

// TestExportMatchesTorchExport compares this exporter's graph with torch.onnx.export's graph of
// the same weights (testdata/models/gpt2-odd-onnx-optimum-op*), both in ONNX Runtime, on a
// full pass and on one cached decoding step.
func TestExportMatchesTorchExport(t *testing.T) {
	orttest.Init(t)
	dir, cfg, ref := fixture(t, "gpt2-odd")
	for _, opset := range []int{14, 17} {
		t.Run(fmt.Sprintf("opset%d", opset), func(t *testing.T) {
			torchPath := filepath.Join("..", "..", "testdata", "models", fmt.Sprintf("gpt2-odd-onnx-optimum-op%d", opset), "model.onnx")
			if _, err := os.Stat(torchPath); err != nil {
				t.Fatalf("torch export fixture missing (scripts/fixtures): %v", err)
			}
			ours := openLM(t, exportTo(t, dir, export.Options{Opset: opset, WithPast: true}), cfg)
			theirs := openLM(t, torchPath, cfg)
			B, T := ref.B, ref.T
			a, pa := ours.run(t, B, T-1, head2(ref.ids, B, T, T-1), head2(ref.mask, B, T, T-1), head2(ref.pos, B, T, T-1), nil)
			b, pb := theirs.run(t, B, T-1, head2(ref.ids, B, T, T-1), head2(ref.mask, B, T, T-1), head2(ref.pos, B, T, T-1), nil)
			compareFloats(t, "prefill logits", a, b, logitsAbsTol)
			for i := range pa {
				compareFloats(t, fmt.Sprintf("present.%d.key", i), pa[i].k, pb[i].k, logitsAbsTol)
				compareFloats(t, fmt.Sprintf("present.%d.value", i), pa[i].v, pb[i].v, logitsAbsTol)
			}
			last := func(x []int64) []int64 { return []int64{x[T-1], x[2*T-1]} }
			a, _ = ours.run(t, B, 1, last(ref.ids), ref.mask, last(ref.pos), pa)
			b, _ = theirs.run(t, B, 1, last(ref.ids), ref.mask, last(ref.pos), pb)
			compareFloats(t, "decode step logits", a, b, logitsAbsTol)
		})
	}
}

// head2 returns the first n columns of a [B,T] matrix.
func head2(x []int64, B, T, n int) []int64 {
	var out []int64
	for b := 0; b < B; b++ {
		out = append(out, x[b*T:b*T+n]...)
	}
	return out
}

// withLMHead copies fixture src to a new directory whose model.safetensors also holds an
// lm_head.weight = scale·wte (scale 1: a tied checkpoint that stores the copy anyway).
func withLMHead(t *testing.T, src string, scale float32) string {
	t.Helper()
	f, err := safetensors.Open(filepath.Join(src, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ts []safetensors.Tensor
	for _, name := range f.Names() {
		v, shape, err := f.Float32(name)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, safetensors.Tensor{Name: name, DType: safetensors.F32, Shape: shape, F32: v})
		if name == "transformer.wte.weight" {
			head := make([]float32, len(v))
			for i := range v {
				head[i] = scale * v[i]
			}
			ts = append(ts, safetensors.Tensor{Name: "lm_head.weight", DType: safetensors.F32, Shape: shape, F32: head})
		}
	}
	dir := t.TempDir()
	if err := safetensors.WriteFile(filepath.Join(dir, "model.safetensors"), ts, nil); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(src, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestExportLMHead checks a checkpoint with an explicit lm_head.weight: equal to wte it is stored
// once; different, the graph uses it, and its logits match native/gpt2 on the same directory.
func TestExportLMHead(t *testing.T) {
	orttest.Init(t)
	src, cfg, ref := fixture(t, "gpt2-odd")
	V, C := cfg.VocabSize, cfg.NEmbd

	tied := exportTo(t, withLMHead(t, src, 1), export.DefaultOptions())
	m, err := onnx.Read(tied)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := onnx.Read(exportTo(t, src, export.DefaultOptions()))
	if err != nil {
		t.Fatal(err)
	}
	if a, b := m.Summary().InitializerBytes, plain.Summary().InitializerBytes; a != b {
		t.Errorf("lm_head.weight equal to wte: %d initializer bytes, want %d (stored once)", a, b)
	}

	dir := withLMHead(t, src, 0.5)
	path := exportTo(t, dir, export.DefaultOptions())
	m, err = onnx.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := m.Summary().InitializerBytes, plain.Summary().InitializerBytes; a != b+int64(4*V*C) {
		t.Errorf("separate lm_head: %d initializer bytes, want %d", a, b+int64(4*V*C))
	}
	got, _ := openLM(t, path, cfg).run(t, ref.B, ref.T, ref.ids, ref.mask, ref.pos, nil)
	native, err := gpt2.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]float32, ref.B*ref.T*V)
	if err := native.Forward(native.NewCache(ref.B), ref.ids, ref.B, ref.T, ref.mask, false, want); err != nil {
		t.Fatal(err)
	}
	compareFloats(t, "logits vs native/gpt2", got, want, logitsAbsTol)
}
