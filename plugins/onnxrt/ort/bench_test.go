package ort

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"

	ortgo "github.com/yalue/onnxruntime_go"

	"github.com/modelrt/modelrt/native/gpt2"
	"github.com/modelrt/modelrt/onnx/export"
	"github.com/modelrt/modelrt/onnx/graph"
)

// benchThreads is the intra-op thread count of the benchmarks (docs/benchmarks.md).
const benchThreads = 2

// gpt2Small is GPT-2 124M's shape.
func gpt2Small() gpt2.Config {
	return gpt2.Config{
		VocabSize: 50257, NPositions: 1024, NEmbd: 768, NLayer: 12, NHead: 12,
		LayerNormEpsilon: 1e-5, ActivationFunction: "gelu_new", BOSTokenID: 50256, EOSTokenID: 50256,
	}
}

var bench124M struct {
	once sync.Once
	dir  string
	err  error
}

// benchModel exports a random-weight GPT-2 124M (export.RandomWeights, seed 1) with onnx/export
// (Optimum cache convention, opset 14) into a temporary directory, once per test binary.
func benchModel(b testing.TB) string {
	b.Helper()
	needORT(b)
	bench124M.once.Do(func() {
		dir, err := os.MkdirTemp("", "modelrt-ort-bench-")
		if err != nil {
			bench124M.err = err
			return
		}
		bench124M.dir = dir
		cfg := gpt2Small()
		m, err := export.BuildGPT2(cfg, export.RandomWeights(cfg, 1), export.DefaultOptions())
		if err != nil {
			bench124M.err = err
			return
		}
		if err := graph.Save(m, filepath.Join(dir, export.ModelFile), graph.SaveOptions{}); err != nil {
			bench124M.err = err
			return
		}
		js, _ := json.Marshal(map[string]any{"n_positions": cfg.NPositions, "n_embd": cfg.NEmbd, "n_layer": cfg.NLayer, "n_head": cfg.NHead, "vocab_size": cfg.VocabSize, "eos_token_id": 50256})
		bench124M.err = os.WriteFile(filepath.Join(dir, "config.json"), js, 0o644)
	})
	if bench124M.err != nil {
		b.Fatal(bench124M.err)
	}
	return bench124M.dir
}

// spinModes are the two thread-pool behaviours every benchmark runs under: ORT's default
// (idle threads spin) and spinning off, which matters on cores shared with other processes.
var spinModes = []struct {
	name string
	spin *bool
}{{"spin=default", nil}, {"spin=off", new(bool)}}

func benchLM(b *testing.B, spin *bool) *LM {
	lm, err := LoadLM(benchModel(b), SessionOptions{IntraOpThreads: benchThreads, InterOpThreads: 1, AllowSpinning: spin})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { lm.Close() })
	return lm
}

func benchPrompt(n int) []int64 {
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = int64((i*7919 + 13) % 50257)
	}
	return ids
}

// BenchmarkPrefill64: one 64-token prompt per iteration at batch 1, last logits only.
func BenchmarkPrefill64(b *testing.B) {
	for _, m := range spinModes {
		b.Run(m.name, func(b *testing.B) { benchPrefill(b, benchLM(b, m.spin), 64) })
	}
}

func benchPrefill(b *testing.B, lm *LM, n int) {
	V := lm.Info().VocabSize
	ids := benchPrompt(n)
	logits := make([]float32, V)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s, err := lm.NewSession(1)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Forward(ctx, ids, 1, len(ids), nil, true, logits); err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
	b.ReportMetric(float64(len(ids)*b.N)/b.Elapsed().Seconds(), "tokens/s")
}

// BenchmarkDecode: one token per iteration at batch 1 after a 64-token prompt (the session is
// renewed, off the clock, before it reaches the context length).
func BenchmarkDecode(b *testing.B) {
	for _, m := range spinModes {
		b.Run(m.name, func(b *testing.B) { benchDecode(b, benchLM(b, m.spin)) })
	}
}

func benchDecode(b *testing.B, lm *LM) {
	V := lm.Info().VocabSize
	ctx := context.Background()
	logits := make([]float32, V)
	prompt := benchPrompt(64)
	var s *LMSession
	start := func() {
		if s != nil {
			s.Close()
		}
		var err error
		if s, err = lm.NewSession(1); err != nil {
			b.Fatal(err)
		}
		if err := s.Forward(ctx, prompt, 1, len(prompt), nil, true, logits); err != nil {
			b.Fatal(err)
		}
	}
	start()
	defer func() { s.Close() }()
	next := []int64{464}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if s.Len() >= lm.Info().MaxContext {
			b.StopTimer()
			start()
			b.StartTimer()
		}
		if err := s.Forward(ctx, next, 1, 1, nil, true, logits); err != nil {
			b.Fatal(err)
		}
		next[0] = int64(i*31+7) % int64(V)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
}

// BenchmarkDecodeORTAllocated is the design alternative BenchmarkDecode is measured against:
// the same graph and thread count through onnxruntime_go directly, letting ORT allocate the
// presents (which onnxruntime_go copies into Go memory) and feeding those copies back as the
// next past. docs/onnxruntime.md explains why LMSession does not do this.
func BenchmarkDecodeORTAllocated(b *testing.B) {
	lm := benchLM(b, nil)
	info := lm.Info()
	nSlots := len(lm.slots)
	prompt := benchPrompt(64)
	var past []ortgo.Value
	n := 0
	step := func(ids []int64) {
		total := n + len(ids)
		mask := make([]int64, total)
		for i := range mask {
			mask[i] = 1
		}
		pos := make([]int64, len(ids))
		for i := range pos {
			pos[i] = int64(n + i)
		}
		in := make([]ortgo.Value, 0, 3+nSlots)
		for _, v := range [][]int64{ids, mask, pos} {
			t, err := ortgo.NewTensor(ortgo.NewShape(1, int64(len(v))), v)
			if err != nil {
				b.Fatal(err)
			}
			in = append(in, t)
		}
		if past == nil {
			for range nSlots {
				t, err := ortgo.NewTensor(ortgo.NewShape(1, int64(info.NHead), 0, int64(info.HeadDim)), []float32{})
				if err != nil {
					b.Fatal(err)
				}
				past = append(past, t)
			}
		}
		in = append(in, past...)
		out := make([]ortgo.Value, 1+nSlots)
		if err := lm.sess.Run(in, out); err != nil {
			b.Fatal(err)
		}
		destroy(in)
		out[0].Destroy()
		past, n = out[1:], total
	}
	reset := func() {
		destroy(past)
		past, n = nil, 0
		step(prompt)
	}
	reset()
	defer func() { destroy(past) }()
	next := []int64{464}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if n >= info.MaxContext {
			b.StopTimer()
			reset()
			b.StartTimer()
		}
		step(next)
		next[0] = int64(i*31+7) % int64(info.VocabSize)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
}
