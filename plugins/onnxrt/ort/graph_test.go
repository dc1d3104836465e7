package ort

import (
	"context"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	ortgo "github.com/yalue/onnxruntime_go"
	"google.golang.org/protobuf/proto"

	"github.com/modelrt/modelrt/onnx"
	"github.com/modelrt/modelrt/onnx/graph"
	"github.com/modelrt/modelrt/onnx/onnxpb"
)

// addGraph writes a small graph to dir/model.onnx:
//
//	sum   = x + y + w[0:1]   x, y: float32 [n,3]; w: a [100,3] initializer (1200 bytes, so that
//	                         external data applies to it), broadcast from its first row
//	total = ReduceSum(sum)   rank 0
//	k2    = k * 2            k: int64 rank 0
func addGraph(t testing.TB, dir string, ir int64, external bool) string {
	t.Helper()
	b := graph.New("add")
	x := b.Input("x", graph.Float, "n", 3)
	y := b.Input("y", graph.Float, "n", 3)
	k := b.Input("k", graph.Int64)
	big := make([]float32, 300) // 1200 bytes: above the builder's inline threshold
	big[0], big[1], big[2] = 0.5, -1, 2
	w := b.Float32("w", []int64{100, 3}, big)
	first := b.Node("Slice", []string{w, b.Ints("starts", 0), b.Ints("ends", 1), b.Ints("axes", 0)})
	b.NodeTo("Add", []string{b.Node("Add", []string{x, y}), first}, []string{"sum"})
	b.Output("sum", graph.Float, "n", 3)
	b.NodeTo("ReduceSum", []string{"sum"}, []string{"total"}, graph.Int("keepdims", 0))
	b.Output("total", graph.Float)
	b.NodeTo("Mul", []string{k, b.Int64("two", nil, []int64{2})}, []string{"k2"})
	b.Output("k2", graph.Int64)
	path := filepath.Join(dir, "model.onnx")
	if err := graph.Save(b.Model(graph.ModelOptions{IRVersion: ir, Opset: 14}), path, graph.SaveOptions{External: external}); err != nil {
		t.Fatal(err)
	}
	return path
}

func f32Bytes(v ...float32) []byte {
	out := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(f))
	}
	return out
}

func bytesF32(b []byte) []float32 {
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

func TestGraphRun(t *testing.T) {
	needORT(t)
	g, err := LoadGraph(addGraph(t, t.TempDir(), 0, false), SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if got := describeInfos(g.Inputs()); got != "[x float32 [-1 3], y float32 [-1 3], k int64 []]" {
		t.Fatalf("Inputs() = %s", got)
	}
	if got := describeInfos(g.Outputs()); got != "[sum float32 [-1 3], total float32 [], k2 int64 []]" {
		t.Fatalf("Outputs() = %s", got)
	}
	k := make([]byte, 8)
	binary.LittleEndian.PutUint64(k, 21)
	out, err := g.Run(context.Background(), map[string]TensorValue{
		"x": {DType: "float32", Shape: []int64{2, 3}, Data: f32Bytes(1, 2, 3, 4, 5, 6)},
		"y": {DType: "float32", Shape: []int64{2, 3}, Data: f32Bytes(10, 20, 30, 40, 50, 60)},
		"k": {DType: "int64", Shape: []int64{}, Data: k},
	})
	if err != nil {
		t.Fatal(err)
	}
	sum := bytesF32(out["sum"].Data)
	want := []float32{11.5, 21, 35, 44.5, 54, 68}
	compare(t, "sum", sum, want, 0)
	if s := out["sum"].Shape; len(s) != 2 || s[0] != 2 || s[1] != 3 {
		t.Fatalf("sum shape %v", s)
	}
	compare(t, "total", bytesF32(out["total"].Data), []float32{234}, 0)
	if got := int64(binary.LittleEndian.Uint64(out["k2"].Data)); got != 42 || len(out["k2"].Shape) != 0 {
		t.Fatalf("k2 = %d shape %v, want 42 []", got, out["k2"].Shape)
	}

	// Zero rows: a zero-size input runs (onnxruntime_go v1.27 NewTensor takes it).
	out, err = g.Run(context.Background(), map[string]TensorValue{
		"x": {DType: "float32", Shape: []int64{0, 3}, Data: nil},
		"y": {DType: "float32", Shape: []int64{0, 3}, Data: nil},
		"k": {DType: "int64", Shape: []int64{}, Data: k},
	})
	if err != nil {
		t.Fatalf("zero-size input: %v", err)
	}
	if s := out["sum"].Shape; len(s) != 2 || s[0] != 0 || len(out["sum"].Data) != 0 {
		t.Fatalf("zero-size sum: shape %v, %d bytes", s, len(out["sum"].Data))
	}

	bad := []struct {
		name string
		in   map[string]TensorValue
		msg  string
	}{
		{"missing", map[string]TensorValue{"x": {}, "y": {}}, "missing inputs [k]"},
		{"unknown", map[string]TensorValue{"x": {}, "y": {}, "k": {}, "z": {}}, "unknown inputs [z]"},
		{"dtype", map[string]TensorValue{
			"x": {DType: "int64", Shape: []int64{1, 3}, Data: make([]byte, 24)},
			"y": {DType: "float32", Shape: []int64{1, 3}, Data: make([]byte, 12)},
			"k": {DType: "int64", Shape: []int64{}, Data: k},
		}, "input x: dtype int64, the graph declares float32"},
		{"static dim", map[string]TensorValue{
			"x": {DType: "float32", Shape: []int64{1, 4}, Data: make([]byte, 16)},
			"y": {DType: "float32", Shape: []int64{1, 3}, Data: make([]byte, 12)},
			"k": {DType: "int64", Shape: []int64{}, Data: k},
		}, "input x: shape [1 4], the graph declares [-1 3]"},
		{"byte count", map[string]TensorValue{
			"x": {DType: "float32", Shape: []int64{1, 3}, Data: make([]byte, 11)},
			"y": {DType: "float32", Shape: []int64{1, 3}, Data: make([]byte, 12)},
			"k": {DType: "int64", Shape: []int64{}, Data: k},
		}, "input x: 11 bytes for float32 [1 3], want 12"},
	}
	for _, c := range bad {
		_, err := g.Run(context.Background(), c.in)
		if !errors.Is(err, ErrInvalidInput) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: error %v, want ErrInvalidInput with %q", c.name, err, c.msg)
		}
	}
}

func TestGraphExternalData(t *testing.T) {
	needORT(t)
	dir := t.TempDir()
	path := addGraph(t, dir, 0, true)
	data := graph.ExternalDataName(path)
	if _, err := os.Stat(filepath.Join(dir, data)); err != nil {
		t.Fatalf("the builder wrote no external data file: %v", err)
	}
	g, err := LoadGraph(path, SessionOptions{})
	if err != nil {
		t.Fatalf("with its external data: %v", err)
	}
	g.Close()
}

// TestBadFiles: every malformed file is a load error naming the file, and the process stays up.
func TestBadFiles(t *testing.T) {
	needORT(t)
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good, err := os.ReadFile(filepath.Join(modelsDir, fixtures[0].dir, "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	extDir := t.TempDir()
	ext := addGraph(t, extDir, 0, true)
	if err := os.Remove(filepath.Join(extDir, graph.ExternalDataName(ext))); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, path, msg string
	}{
		{"not onnx", write("text.onnx", []byte("this is not a protobuf, just some text\n")), "Protobuf parsing failed"},
		{"truncated", write("truncated.onnx", good[:len(good)/2]), "Protobuf parsing failed"},
		{"missing external data", ext, graph.ExternalDataName(ext)},
		{"IR version too new", addGraph(t, t.TempDir(), 99, false), "IR version"},
		{"empty file", write("empty.onnx", nil), "empty.onnx"},
		{"no such file", filepath.Join(dir, "absent.onnx"), "no such file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := LoadGraph(c.path, SessionOptions{})
			if err == nil || !strings.Contains(err.Error(), c.path) || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("LoadGraph error %v; want one naming %s and saying %q", err, c.path, c.msg)
			}
			t.Log(err)
			_, err = LoadLM(c.path, SessionOptions{})
			if err == nil || !strings.Contains(err.Error(), c.path) {
				t.Fatalf("LoadLM error %v; want one naming %s", err, c.path)
			}
		})
	}
	// Still up: a good model loads after all of that.
	loadFixture(t, fixtures[0].dir)
}

func TestGraphWithoutInputs(t *testing.T) {
	needORT(t)
	b := graph.New("const")
	b.NodeTo("Identity", []string{b.Float32("c", []int64{1}, []float32{1})}, []string{"y"})
	b.Output("y", graph.Float, 1)
	path := filepath.Join(t.TempDir(), "model.onnx")
	if err := graph.Save(b.Model(graph.ModelOptions{}), path, graph.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadGraph(path, SessionOptions{}); !errors.Is(err, ErrUnsupportedGraph) {
		t.Fatalf("error %v, want ErrUnsupportedGraph", err)
	}
}

// TestUnknownConvention: a real graph whose inputs fit nothing; the error lists them.
func TestUnknownConvention(t *testing.T) {
	needORT(t)
	b := graph.New("odd")
	tok := b.Input("tokens", graph.Int64, "batch", "seq")
	b.NodeTo("Cast", []string{tok}, []string{"logits"}, graph.Int("to", int64(graph.Float)))
	b.Output("logits", graph.Float, "batch", "seq")
	dir := t.TempDir()
	if err := graph.Save(b.Model(graph.ModelOptions{}), filepath.Join(dir, "model.onnx"), graph.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := InspectLM(dir); !errors.Is(err, ErrUnsupportedGraph) {
		t.Fatalf("InspectLM error %v, want ErrUnsupportedGraph", err)
	}
	_, err := LoadLM(dir, SessionOptions{})
	if !errors.Is(err, ErrUnsupportedGraph) {
		t.Fatalf("error %v, want ErrUnsupportedGraph", err)
	}
	for _, want := range []string{"tokens int64 [-1 -1]", "past_key_values.{i}.key|value", "past_{i}", "no-past"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q: %v", want, err)
		}
	}
	t.Log(err)
}

func info(name string, dt ortgo.TensorElementDataType, dims ...int64) ortgo.InputOutputInfo {
	return ortgo.InputOutputInfo{Name: name, OrtValueType: ortgo.ONNXTypeTensor, DataType: dt, Dimensions: dims}
}

// TestDetect covers the convention rules on declared inputs and outputs alone.
func TestDetect(t *testing.T) {
	const f32, i64, i32, f16 = ortgo.TensorElementDataTypeFloat, ortgo.TensorElementDataTypeInt64, ortgo.TensorElementDataTypeInt32, ortgo.TensorElementDataTypeFloat16
	ids := info("input_ids", i64, -1, -1)
	mask := info("attention_mask", i64, -1, -1)
	logits := info("logits", f32, -1, -1, 50)
	kv := func(l, kind string, dt ortgo.TensorElementDataType, h, d int64) ortgo.InputOutputInfo {
		return info("past_key_values."+l+"."+kind, dt, -1, h, -1, d)
	}
	pres := func(l, kind string) ortgo.InputOutputInfo { return info("present."+l+"."+kind, f32, -1, 4, -1, 8) }
	cfg := modelConfig{nHead: 4, headDim: 8, vocab: 50}
	cases := []struct {
		name      string
		ins, outs []ortgo.InputOutputInfo
		cfg       modelConfig
		conv      Convention
		err       string // substring of the ErrUnsupportedGraph message; "" = success
	}{
		{"optimum", []ortgo.InputOutputInfo{ids, mask, kv("0", "key", f32, 4, 8), kv("0", "value", f32, 4, 8)},
			[]ortgo.InputOutputInfo{logits, pres("0", "key"), pres("0", "value")}, modelConfig{}, ConventionOptimum, ""},
		{"symbolic heads from config", []ortgo.InputOutputInfo{ids, kv("0", "key", f32, -1, -1), kv("0", "value", f32, -1, -1)},
			[]ortgo.InputOutputInfo{logits, pres("0", "key"), pres("0", "value")}, cfg, ConventionOptimum, ""},
		{"symbolic heads without config", []ortgo.InputOutputInfo{ids, kv("0", "key", f32, -1, -1), kv("0", "value", f32, -1, -1)},
			[]ortgo.InputOutputInfo{logits, pres("0", "key"), pres("0", "value")}, modelConfig{}, "", "head count or head size is symbolic"},
		{"missing value", []ortgo.InputOutputInfo{ids, kv("0", "key", f32, 4, 8)},
			[]ortgo.InputOutputInfo{logits, pres("0", "key")}, modelConfig{}, "", "key/value pairs"},
		{"layer gap", []ortgo.InputOutputInfo{ids, kv("0", "key", f32, 4, 8), kv("0", "value", f32, 4, 8), kv("2", "key", f32, 4, 8), kv("2", "value", f32, 4, 8)},
			[]ortgo.InputOutputInfo{logits, pres("0", "key"), pres("0", "value"), pres("2", "key"), pres("2", "value")}, modelConfig{}, "", "layers 0..1"},
		{"missing present", []ortgo.InputOutputInfo{ids, kv("0", "key", f32, 4, 8), kv("0", "value", f32, 4, 8)},
			[]ortgo.InputOutputInfo{logits, pres("0", "key")}, modelConfig{}, "", "no present.0.value output"},
		{"float16 cache", []ortgo.InputOutputInfo{ids, kv("0", "key", f16, 4, 8), kv("0", "value", f16, 4, 8)},
			[]ortgo.InputOutputInfo{logits}, modelConfig{}, "", "only float32 caches"},
		{"mixed conventions", []ortgo.InputOutputInfo{ids, kv("0", "key", f32, 4, 8), kv("0", "value", f32, 4, 8), info("past_0", f32, 2, -1, 4, -1, 8)},
			[]ortgo.InputOutputInfo{logits}, modelConfig{}, "", "both past_key_values"},
		{"stacked", []ortgo.InputOutputInfo{info("input_ids", i32, -1, -1), info("past_0", f32, 2, -1, 4, -1, 8)},
			[]ortgo.InputOutputInfo{logits, info("present_0", f32, 2, -1, 4, -1, 8)}, modelConfig{}, ConventionStacked, ""},
		{"stacked wrong lead", []ortgo.InputOutputInfo{ids, info("past_0", f32, 3, -1, 4, -1, 8)},
			[]ortgo.InputOutputInfo{logits, info("present_0", f32, 3, -1, 4, -1, 8)}, modelConfig{}, "", "want [2,B,H,P,D]"},
		{"no past", []ortgo.InputOutputInfo{ids}, []ortgo.InputOutputInfo{logits}, modelConfig{}, ConventionNoPast, ""},
		{"ids rank 1", []ortgo.InputOutputInfo{info("input_ids", i64, -1)}, []ortgo.InputOutputInfo{logits}, modelConfig{}, "", "input_ids has rank 1"},
		{"float ids", []ortgo.InputOutputInfo{info("input_ids", f32, -1, -1)}, []ortgo.InputOutputInfo{logits}, modelConfig{}, "", "input_ids is float32"},
		{"no input_ids", []ortgo.InputOutputInfo{info("tokens", i64, -1, -1)}, []ortgo.InputOutputInfo{logits}, modelConfig{}, "", "no input_ids"},
		{"unknown extra input", []ortgo.InputOutputInfo{ids, info("token_type_ids", i64, -1, -1)}, []ortgo.InputOutputInfo{logits}, modelConfig{}, "", "unrecognised inputs token_type_ids"},
		{"cache branch without past", []ortgo.InputOutputInfo{ids, info("use_cache_branch", ortgo.TensorElementDataTypeBool, 1)}, []ortgo.InputOutputInfo{logits}, modelConfig{}, "", "use_cache_branch without past"},
		{"no logits", []ortgo.InputOutputInfo{ids}, []ortgo.InputOutputInfo{info("scores", f32, -1, -1, 50)}, modelConfig{}, "", "no logits output"},
		{"symbolic vocab", []ortgo.InputOutputInfo{ids}, []ortgo.InputOutputInfo{info("logits", f32, -1, -1, -1)}, modelConfig{}, "", "vocabulary size is symbolic"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			lm, _, _, err := detect("g.onnx", c.ins, c.outs, c.cfg)
			if c.err != "" {
				if !errors.Is(err, ErrUnsupportedGraph) || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want ErrUnsupportedGraph saying %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			i := lm.Info()
			heads := c.conv == ConventionNoPast || (i.NHead == 4 && i.HeadDim == 8)
			if i.Convention != c.conv || !heads || i.VocabSize != 50 {
				t.Fatalf("Info() = %+v", i)
			}
		})
	}
}

func TestSessionOptions(t *testing.T) {
	needORT(t)
	dir := filepath.Join(modelsDir, fixtures[0].dir)
	ref := loadReference(t, dir)
	off := false
	for _, so := range []SessionOptions{
		{GraphOptimizationLevel: "disable", MemoryArena: &off},
		{GraphOptimizationLevel: "basic", IntraOpThreads: 2, InterOpThreads: 1},
		{GraphOptimizationLevel: "extended", ExecutionProviders: []string{"cpu"}},
		{GraphOptimizationLevel: "all", AllowSpinning: &off},
	} {
		lm, err := LoadLM(dir, so)
		if err != nil {
			t.Fatalf("%+v: %v", so, err)
		}
		s := newSession(t, lm, 2)
		got := make([]float32, 2*ref.T*oddVocab)
		if err := s.Forward(context.Background(), ref.ids, 2, ref.T, ref.mask, false, got); err != nil {
			t.Fatal(err)
		}
		compare(t, "logits with "+so.GraphOptimizationLevel, got, ref.logits, logitsTol)
		s.Close()
		lm.Close()
	}
	if _, err := LoadLM(dir, SessionOptions{GraphOptimizationLevel: "max"}); !errors.Is(err, ErrInvalidInput) {
		t.Fatalf("level max: %v, want ErrInvalidInput", err)
	}
	if _, err := LoadLM(dir, SessionOptions{IntraOpThreads: -1}); !errors.Is(err, ErrInvalidInput) {
		t.Fatalf("negative threads: %v, want ErrInvalidInput", err)
	}
	for _, ep := range []string{"cuda", "tensorrt", "NoSuchProvider"} {
		_, err := LoadLM(dir, SessionOptions{ExecutionProviders: []string{ep}})
		if !errors.Is(err, ErrProviderUnavailable) {
			t.Fatalf("provider %s: %v, want ErrProviderUnavailable", ep, err)
		}
		t.Log(err)
	}
}

func TestInitErrors(t *testing.T) {
	needORT(t)
	if err := Init(EnvOptions{}); err != nil {
		t.Fatalf("second Init: %v", err)
	}
	if err := Init(EnvOptions{LibraryPath: "/nonexistent/libonnxruntime.so.1"}); !errors.Is(err, ErrLibrary) {
		t.Fatalf("switching library: %v, want ErrLibrary", err)
	}
	if Version() == "" || LibraryPath() == "" {
		t.Fatalf("Version() %q, LibraryPath() %q after Init", Version(), LibraryPath())
	}
}

// TestConcurrentSessions decodes in several sessions of one LM at once; each must match a
// sequential run.
func TestConcurrentSessions(t *testing.T) {
	lm := loadFixture(t, fixtures[0].dir)
	ref := loadReference(t, filepath.Join(modelsDir, fixtures[0].dir))
	const newTokens = 8
	prompt := ref.greedy[:len(ref.greedy)-newTokens]
	var wg sync.WaitGroup
	errs := make([]string, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := lm.NewSession(1)
			if err != nil {
				errs[i] = err.Error()
				return
			}
			defer s.Close()
			logits := make([]float32, oddVocab)
			ids := prompt
			for n := 0; n < newTokens; n++ {
				if err := s.Forward(context.Background(), ids, 1, len(ids), nil, true, logits); err != nil {
					errs[i] = err.Error()
					return
				}
				best := argmax(logits)
				if int64(best) != ref.greedy[len(prompt)+n] {
					errs[i] = "diverged from the reference greedy ids"
					return
				}
				ids = []int64{int64(best)}
			}
		}()
	}
	wg.Wait()
	for i, e := range errs {
		if e != "" {
			t.Errorf("session %d: %s", i, e)
		}
	}
}

// TestFixedBatch: a graph whose input_ids fix the batch refuses sessions of another size.
func TestFixedBatch(t *testing.T) {
	needORT(t)
	lm, _, _, err := detect("g.onnx", []ortgo.InputOutputInfo{info("input_ids", ortgo.TensorElementDataTypeInt64, 1, -1)},
		[]ortgo.InputOutputInfo{info("logits", ortgo.TensorElementDataTypeFloat, 1, -1, 50)}, modelConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lm.NewSession(2); !errors.Is(err, ErrInvalidInput) || !strings.Contains(err.Error(), "fixes the batch at 1") {
		t.Fatalf("NewSession(2): %v, want ErrInvalidInput", err)
	}
	s, err := lm.NewSession(1)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}

// TestScanGraphIOMatchesORT: the protobuf scan reports exactly what ONNX Runtime reports, for
// every fixture and every kind of graph the tests build.
func TestScanGraphIOMatchesORT(t *testing.T) {
	needORT(t)
	var paths []string
	for _, fx := range fixtures {
		p := filepath.Join(modelsDir, fx.dir, "model.onnx")
		if strings.Contains(fx.dir, "merged") {
			p = filepath.Join(modelsDir, fx.dir, "decoder_model_merged.onnx")
		}
		paths = append(paths, p)
	}
	paths = append(paths, addGraph(t, t.TempDir(), 0, false), addGraph(t, t.TempDir(), 0, true))

	// An initializer also declared as a graph input (the IR < 4 style): not a session input.
	withInitInput := addGraph(t, t.TempDir(), 0, false)
	m, err := onnx.Read(withInitInput)
	if err != nil {
		t.Fatal(err)
	}
	vi := proto.Clone(m.Proto.Graph.Input[0]).(*onnxpb.ValueInfoProto)
	vi.Name = proto.String("w")
	m.Proto.Graph.Input = append(m.Proto.Graph.Input, vi)
	if err := graph.Save(m.Proto, withInitInput, graph.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	paths = append(paths, withInitInput)
	if ins, _, err := scanGraphIO(withInitInput); err != nil || len(ins) != 3 || len(m.Proto.Graph.Input) != 4 {
		t.Fatalf("initializer-as-input graph: %d declared inputs, scan gives %s (%v); want x, y, k", len(m.Proto.Graph.Input), describe(ins), err)
	}
	for _, p := range paths {
		got, gotOut, err := scanGraphIO(p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		want, wantOut, err := ortGraphInfo(p)
		if err != nil {
			t.Fatal(err)
		}
		if describe(got) != describe(want) || describe(gotOut) != describe(wantOut) {
			t.Fatalf("%s:\nscan inputs %s outputs %s\nORT  inputs %s outputs %s", p, describe(got), describe(gotOut), describe(want), describe(wantOut))
		}
		for i := range got {
			if got[i].OrtValueType != want[i].OrtValueType {
				t.Fatalf("%s: input %s kind %v, ORT says %v", p, got[i].Name, got[i].OrtValueType, want[i].OrtValueType)
			}
		}
	}
}
