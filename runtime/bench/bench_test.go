package bench

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/modelrt/modelrt/native/gpt2"
	"github.com/modelrt/modelrt/native/vae"
	"github.com/modelrt/modelrt/onnx/export"
	"github.com/modelrt/modelrt/sdk/modeldir"
	"github.com/modelrt/modelrt/sdk/safetensors"
)

func TestParseVmHWM(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		err  string
	}{
		{"Name:\tmodelrt-native\nVmPeak:\t  9000 kB\nVmHWM:\t  1234 kB\nVmRSS:\t 1000 kB\n", 1234 * 1024, ""},
		{"VmHWM: 0 kB", 0, ""},
		{"Name: x\n", 0, "no VmHWM"},
		{"VmHWM: 12 MB\n", 0, "want"},
		{"VmHWM: -3 kB\n", 0, "bad size"},
		{"VmHWM: 99999999999999999999 kB\n", 0, "bad size"},
	} {
		got, err := ParseVmHWM([]byte(tc.in))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseVmHWM(%q) = %d, %v; want error with %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseVmHWM(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}

func FuzzParseVmHWM(f *testing.F) {
	f.Add([]byte("VmHWM:\t  1234 kB\n"))
	f.Add([]byte("VmPeak: 1 kB\nVmHWM: 9223372036854775807 kB\n"))
	f.Add([]byte("VmHWM:"))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := ParseVmHWM(data)
		if err == nil && (v < 0 || v%1024 != 0) {
			t.Fatalf("ParseVmHWM(%q) = %d without error", data, v)
		}
	})
}

func TestParseStatCPU(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"12073 (cat) R 12028 12028 19590 0 -1 4194304 100 0 0 0 7 3 0 0 20 0 1 0 372201", 10, true},
		{"1 (a) b) (c) S 0 0 0 0 -1 0 0 0 0 0 250 50 0 0 20 0 1 0 1", 300, true}, // name with ") "
		{"1 (x) S 0 0 0", 0, false},
		{"no parenthesis", 0, false},
		{"1 (x) S 0 0 0 0 -1 0 0 0 0 0 -5 1 0", 0, false},
	} {
		got, err := ParseStatCPU([]byte(tc.in))
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseStatCPU(%q) = %d, %v; want %d (ok %v)", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func FuzzParseStatCPU(f *testing.F) {
	f.Add([]byte("12073 (cat) R 12028 12028 19590 0 -1 4194304 100 0 0 0 7 3 0 0 20 0 1 0 372201"))
	f.Add([]byte("1 (a) b) S 0 0 0 0 -1 0 0 0 0 0 9223372036854775807 1 0"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if v, err := ParseStatCPU(data); err == nil && v < 0 {
			t.Fatalf("ParseStatCPU(%q) = %d", data, v)
		}
	})
}

func TestProcessCPUOfThisProcess(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skipf("no /proc on this system (%v): ProcessCPU reads Linux's /proc/PID/stat", err)
	}
	before, err := ProcessCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	x := 0.0
	for i := range 50_000_000 { // about 50 ms of CPU: several clock ticks
		x += math.Sqrt(float64(i))
	}
	after, err := ProcessCPU(os.Getpid())
	if err != nil || after <= before {
		t.Fatalf("CPU %v then %v (%v) after work (%g)", before, after, err, x)
	}
}

func TestParseConfigFlag(t *testing.T) {
	for _, tc := range []struct {
		in, backend, key string
		value            any
	}{
		{"onnxrt.allow_spinning=false", "onnxrt", "allow_spinning", false},
		{"onnxrt.intra_op_threads=2", "onnxrt", "intra_op_threads", 2.0},
		{"native.mode=fast", "native", "mode", "fast"},
		{"a.b.c=[1]", "a", "b.c", []any{1.0}},
	} {
		b, k, v, err := ParseConfigFlag(tc.in)
		if err != nil || b != tc.backend || k != tc.key || fmt.Sprint(v) != fmt.Sprint(tc.value) {
			t.Errorf("ParseConfigFlag(%q) = %q %q %#v %v", tc.in, b, k, v, err)
		}
	}
	for _, bad := range []string{"onnxrt=1", ".x=1", "onnxrt.=1", "onnxrt.x"} {
		if _, _, _, err := ParseConfigFlag(bad); err == nil {
			t.Errorf("ParseConfigFlag(%q) accepted", bad)
		}
	}
}

func FuzzParseConfigFlag(f *testing.F) {
	f.Add("onnxrt.allow_spinning=false")
	f.Add("a.b=\"x\"")
	f.Fuzz(func(t *testing.T, s string) {
		b, k, _, err := ParseConfigFlag(s)
		if err == nil && (b == "" || k == "" || strings.Contains(b, ".") || strings.Contains(b, "=")) {
			t.Fatalf("ParseConfigFlag(%q) = %q %q", s, b, k)
		}
	})
}

func TestPeakRSSOfThisProcess(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skipf("no /proc on this system (%v): PeakRSS reads Linux's /proc/PID/status", err)
	}
	v, err := PeakRSS(os.Getpid())
	if err != nil || v <= 0 {
		t.Fatalf("PeakRSS(self) = %d, %v", v, err)
	}
}

func TestShapesValidate(t *testing.T) {
	for _, name := range []string{"full", "quick", "tiny"} {
		s, err := ShapeByName(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	s := Tiny()
	s.NewTokens = s.GPT2.NPositions
	if err := s.Validate(); err == nil {
		t.Error("a workload longer than n_positions validated")
	}
	if _, err := ShapeByName("huge"); err == nil {
		t.Error("unknown shape accepted")
	}
}

func TestCacheKey(t *testing.T) {
	a, b := Tiny(), Tiny()
	if CacheKey(a) != CacheKey(b) {
		t.Error("same shape, different keys")
	}
	b.GPT2.NLayer++
	if CacheKey(a) == CacheKey(b) {
		t.Error("different GPT-2 shapes share a key")
	}
	b = Tiny()
	b.Seed++
	if CacheKey(a) == CacheKey(b) {
		t.Error("different seeds share a key")
	}
	b = Tiny()
	b.NewTokens++ // the workload does not change the models
	if CacheKey(a) != CacheKey(b) {
		t.Error("workload changed the cache key")
	}
}

// TestPrepare checks that the cached GPT-2 holds exactly export.RandomWeights (the weights the
// ONNX export reads back), that native/gpt2 and native/vae load the directories, and that two
// caches built apart are byte-identical.
func TestPrepare(t *testing.T) {
	s := Tiny()
	var steps []string
	m, err := Prepare(t.TempDir(), s, true, func(what string) { steps = append(steps, what) })
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != 5 {
		t.Errorf("steps = %q; want 5 creations", steps)
	}
	for _, d := range []string{m.GPT2, m.GPT2Int8, m.GPT2ONNX, m.VAE, m.VAEONNX} {
		if _, err := os.Stat(d + ".tmp"); err == nil {
			t.Errorf("%s.tmp left behind", d)
		}
	}
	if _, err := os.Stat(filepath.Join(m.GPT2ONNX, export.ModelFile)); err != nil {
		t.Error(err)
	}
	for _, sub := range []string{export.VAEEncoderDir, export.VAEDecoderDir} {
		if _, err := os.Stat(filepath.Join(m.VAEONNX, sub, export.ModelFile)); err != nil {
			t.Error(err)
		}
	}
	if _, err := gpt2.Load(m.GPT2); err != nil {
		t.Errorf("native gpt2: %v", err)
	}
	if _, err := gpt2.Load(m.GPT2Int8); err != nil {
		t.Errorf("native gpt2 int8: %v", err)
	}
	if _, err := vae.Load(m.VAE); err != nil {
		t.Errorf("native vae: %v", err)
	}

	f, err := safetensors.Open(filepath.Join(m.GPT2, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := export.RandomWeights(s.GPT2, s.Seed)
	for name := range modeldir.GPT2Shapes(s.GPT2) {
		want, _, err := w.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		got, _, err := f.Float32(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for i, v := range got {
			if want := binary.LittleEndian.Uint32(want[4*i:]); math.Float32bits(v) != want {
				t.Fatalf("%s[%d] = %v differs from export.RandomWeights", name, i, v)
			}
		}
	}

	// Again in a fresh cache: the same bytes.
	m2, err := Prepare(t.TempDir(), s, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"gpt2/model.safetensors", "vae/diffusion_pytorch_model.safetensors", "gpt2-onnx/model.onnx"} {
		a, errA := os.ReadFile(filepath.Join(filepath.Dir(m.GPT2), p))
		b, errB := os.ReadFile(filepath.Join(filepath.Dir(m2.GPT2), p))
		if errA != nil || errB != nil || !bytes.Equal(a, b) {
			t.Errorf("%s differs between two caches (%v, %v)", p, errA, errB)
		}
	}
	if _, err := os.Stat(m2.GPT2Int8); err == nil {
		t.Error("int8 directory written though not asked for")
	}
}

// TestRatiosAndTable checks the direction of every ratio: times as base ÷ row, tokens/s and RSS
// as row ÷ base.
func TestRatiosAndTable(t *testing.T) {
	const tol = 1e-12
	rows := []Row{
		{Name: "native", LM: &LMResult{LoadMS: 50, PrefillMS: 40, PeakRSSBytes: 100 << 20,
			Decode: []DecodePoint{{Batch: 1, TokensPerSec: 30}, {Batch: 8, TokensPerSec: 120}}}, VAE: &VAEResult{LoadMS: 1, EncodeMS: 200, DecodeMS: 400, PeakRSSBytes: 10 << 20}},
		{Name: "onnxrt", LM: &LMResult{LoadMS: 100, PrefillMS: 20, PeakRSSBytes: 200 << 20,
			Decode: []DecodePoint{{Batch: 1, TokensPerSec: 60}, {Batch: 8, TokensPerSec: 240}}}, VAE: &VAEResult{LoadMS: 2, EncodeMS: 100, DecodeMS: 100, PeakRSSBytes: 20 << 20}},
	}
	base, rs := ratios(rows)
	if base != "onnxrt" {
		t.Fatalf("base = %q", base)
	}
	want := map[string]float64{"lm_load": 2, "prefill": 0.5, "decode_b1": 0.5, "decode_b8": 0.5, "lm_peak_rss": 0.5,
		"vae_load": 2, "vae_encode": 0.5, "vae_decode": 0.25, "vae_peak_rss": 0.5}
	got := map[string]float64{}
	for _, r := range rs {
		if r.Row != "native" {
			t.Errorf("ratio of row %q", r.Row)
		}
		got[r.Metric] = r.Value
	}
	for k, w := range want {
		if g, ok := got[k]; !ok || math.Abs(g-w) > tol {
			t.Errorf("ratio %s = %v (present %v); want %v", k, g, ok, w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("ratios %v; want keys of %v", got, want)
	}
	rep := &Report{Shape: Shape{PromptTokens: 64, ImageSize: 256, Batches: []int{1, 8}}, Rows: rows, Base: base, Ratios: rs}
	var b strings.Builder
	if err := rep.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"native/onnxrt", "prefill 64 tokens (ms)", "0.25×", "decode batch 8 (tokens/s)"} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, b.String())
		}
	}
	png := filepath.Join(t.TempDir(), "p.png")
	if err := rep.Plot(png); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(png); err != nil || !bytes.HasPrefix(data, []byte("\x89PNG")) {
		t.Errorf("plot: %v", err)
	}
}

// TestBandwidthFraction: 10 tokens/s reading 1 GB each against 20 GB/s is half the limit.
func TestBandwidthFraction(t *testing.T) {
	r := &LMResult{WeightBytes: 1e9, Decode: []DecodePoint{{Batch: 1, TokensPerSec: 10}}}
	if got := r.BandwidthFraction(20); math.Abs(got-0.5) > 1e-12 {
		t.Errorf("BandwidthFraction = %v, want 0.5", got)
	}
	if got := (&LMResult{Decode: r.Decode}).BandwidthFraction(20); got != 0 {
		t.Errorf("without WeightBytes: %v, want 0", got)
	}
}

// TestMergeRows: two rounds of a row keep the best time and speed of each metric, the largest
// peak RSS, and both errors.
func TestMergeRows(t *testing.T) {
	a := Row{Name: "native", LM: &LMResult{LoadMS: 50, PrefillMS: 40, PrefillCPUMS: 80, PeakRSSBytes: 100, LoadPeakRSSBytes: 90, WeightBytes: 7,
		Decode: []DecodePoint{{Batch: 1, TokensPerSec: 30, TokensPerCPUSec: 20}, {Batch: 8, TokensPerSec: 120, TokensPerCPUSec: 70}}},
		VAE: &VAEResult{LoadMS: 3, EncodeMS: 200, DecodeMS: 300, EncodeCPUMS: 390, DecodeCPUMS: 600, PeakRSSBytes: 10}}
	b := Row{Name: "native", Error: "round 2 failed", LM: &LMResult{LoadMS: 60, PrefillMS: 35, PrefillCPUMS: 90, PeakRSSBytes: 110, LoadPeakRSSBytes: 80, WeightBytes: 7,
		Decode: []DecodePoint{{Batch: 1, TokensPerSec: 33, TokensPerCPUSec: 19}, {Batch: 8, TokensPerSec: 100, TokensPerCPUSec: 75}}},
		VAE: &VAEResult{LoadMS: 2, EncodeMS: 210, DecodeMS: 280, EncodeCPUMS: 380, DecodeCPUMS: 610, PeakRSSBytes: 12}}
	aDecode := slices.Clone(a.LM.Decode)
	m := mergeRows(a, b)
	want := LMResult{LoadMS: 50, PrefillMS: 35, PrefillCPUMS: 80, PeakRSSBytes: 110, LoadPeakRSSBytes: 90, WeightBytes: 7,
		Decode: []DecodePoint{{Batch: 1, TokensPerSec: 33, TokensPerCPUSec: 20}, {Batch: 8, TokensPerSec: 120, TokensPerCPUSec: 75}}}
	if !reflect.DeepEqual(*m.LM, want) {
		t.Errorf("merged LM %+v; want %+v", *m.LM, want)
	}
	if wantV := (VAEResult{LoadMS: 2, EncodeMS: 200, DecodeMS: 280, EncodeCPUMS: 380, DecodeCPUMS: 600, PeakRSSBytes: 12}); *m.VAE != wantV {
		t.Errorf("merged VAE %+v; want %+v", *m.VAE, wantV)
	}
	if m.Error != "round 2 failed" {
		t.Errorf("merged error %q; want round 2's", m.Error)
	}
	if !reflect.DeepEqual(a.LM.Decode, aDecode) {
		t.Errorf("mergeRows changed its first argument's decode points: %+v", a.LM.Decode)
	}
	// A round that failed after its load keeps zeros; they do not replace the other round's.
	failed := Row{Name: "native", Error: "decode failed", LM: &LMResult{LoadMS: 40, WeightBytes: 7}, VAE: &VAEResult{LoadMS: 1}}
	if m := mergeRows(a, failed); m.LM.PrefillMS != 40 || m.LM.LoadMS != 40 || m.LM.Point(1).TokensPerSec != 30 || m.VAE.EncodeMS != 200 || m.VAE.LoadMS != 1 {
		t.Errorf("merging a failed round: LM %+v, VAE %+v; want round 1's figures, the failed round's faster loads", *m.LM, *m.VAE)
	}
	if m := mergeRows(Row{Error: "x"}, Row{Error: "y", LM: b.LM}); m.Error != "x; y" || m.LM != b.LM {
		t.Errorf("merging into a failed round: error %q, LM %v", m.Error, m.LM)
	}
}
