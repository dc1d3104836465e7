package backend_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/modelrt/modelrt/native/gpt2"
	"github.com/modelrt/modelrt/onnx/export"
	"github.com/modelrt/modelrt/onnx/graph"
	"github.com/modelrt/modelrt/plugins/onnxrt/backend"
	"github.com/modelrt/modelrt/plugins/onnxrt/ort"
	"github.com/modelrt/modelrt/runtime/lm"
	"github.com/modelrt/modelrt/runtime/plugin"
	"github.com/modelrt/modelrt/sdk"
)

// These benchmarks put the onnxrt plugin beside ONNX Runtime in-process on one graph (GPT-2
// 124M shape, random weights from export.RandomWeights, exported by onnx/export), with the same
// session options, so that the cost of the plugin boundary is what differs.
//
//	go test -run '^$' -bench 'LM124M' -benchtime 64x -count 3 ./plugins/onnxrt/backend/

const benchThreads = 2

var bench124M struct {
	once sync.Once
	dir  string
	err  error
}

func benchDir(b *testing.B) string {
	bench124M.once.Do(func() {
		cfg := gpt2.Config{VocabSize: 50257, NPositions: 1024, NEmbd: 768, NLayer: 12, NHead: 12,
			LayerNormEpsilon: 1e-5, ActivationFunction: "gelu_new", BOSTokenID: 50256, EOSTokenID: 50256}
		dir, err := os.MkdirTemp("", "onnxrt-lm-bench-")
		if err != nil {
			bench124M.err = err
			return
		}
		bench124M.dir = dir
		m, err := export.BuildGPT2(cfg, export.RandomWeights(cfg, 1), export.DefaultOptions())
		if err == nil {
			err = graph.Save(m, filepath.Join(dir, export.ModelFile), graph.SaveOptions{})
		}
		if err == nil {
			js, _ := json.Marshal(map[string]any{"n_positions": cfg.NPositions, "n_embd": cfg.NEmbd, "n_layer": cfg.NLayer,
				"n_head": cfg.NHead, "vocab_size": cfg.VocabSize, "eos_token_id": 50256})
			err = os.WriteFile(filepath.Join(dir, "config.json"), js, 0o644)
		}
		bench124M.err = err
	})
	if bench124M.err != nil {
		b.Fatal(bench124M.err)
	}
	return bench124M.dir
}

func benchIDs(n int) []int64 {
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = int64((i*7919 + 13) % 50257)
	}
	return ids
}

// stepper is one batch-1 session, in-process or through the plugin.
type stepper interface {
	Step(ctx context.Context, ids []int64, B, T int, mask []int64) ([]float32, error)
}

type inProcess struct {
	s      *ort.LMSession
	logits []float32
}

func (p *inProcess) Step(ctx context.Context, ids []int64, B, T int, _ []int64) ([]float32, error) {
	return p.logits, p.s.Forward(ctx, ids, B, T, nil, true, p.logits)
}

// open returns a function that opens a fresh session on the chosen side.
func open(b *testing.B, side string) func() (stepper, func()) {
	dir := benchDir(b)
	ctx := context.Background()
	spin := false
	if side == "in-process" {
		if err := ort.Init(ort.EnvOptions{}); err != nil {
			b.Fatal(err)
		}
		m, err := ort.LoadLM(dir, ort.SessionOptions{IntraOpThreads: benchThreads, InterOpThreads: 1, AllowSpinning: &spin})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { m.Close() })
		return func() (stepper, func()) {
			s, err := m.NewSession(1)
			if err != nil {
				b.Fatal(err)
			}
			return &inProcess{s: s, logits: make([]float32, m.Info().VocabSize)}, func() { s.Close() }
		}
	}
	p, err := plugin.Start(ctx, plugin.Config{Name: "onnxrt", Path: pluginPath, LogLevel: "warn"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	cfg, _ := json.Marshal(backend.Config{IntraOpThreads: benchThreads, InterOpThreads: 1, AllowSpinning: &spin})
	if _, err := p.Configure(ctx, &sdk.ConfigureRequest{Config: cfg}); err != nil {
		b.Fatal(err)
	}
	m, err := lm.Load(ctx, p, "gpt2", dir, nil)
	if err != nil {
		b.Fatal(err)
	}
	return func() (stepper, func()) {
		s, err := m.Open(ctx, 1)
		if err != nil {
			b.Fatal(err)
		}
		return s, func() { s.Close() }
	}
}

func BenchmarkLM124MPrefill64(b *testing.B) {
	prompt := benchIDs(64)
	for _, side := range []string{"in-process", "plugin"} {
		b.Run(side, func(b *testing.B) {
			newSession := open(b, side)
			ctx := context.Background()
			for b.Loop() {
				s, done := newSession()
				if _, err := s.Step(ctx, prompt, 1, len(prompt), nil); err != nil {
					b.Fatal(err)
				}
				done()
			}
			b.ReportMetric(float64(b.N*len(prompt))/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}

func BenchmarkLM124MDecode(b *testing.B) {
	prompt := benchIDs(64)
	for _, side := range []string{"in-process", "plugin"} {
		b.Run(side, func(b *testing.B) {
			newSession := open(b, side)
			ctx := context.Background()
			s, done := newSession()
			if _, err := s.Step(ctx, prompt, 1, len(prompt), nil); err != nil {
				b.Fatal(err)
			}
			n, next := len(prompt), []int64{464}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if n >= 1000 { // stay inside the 1024-position context
					b.StopTimer()
					done()
					s, done = newSession()
					if _, err := s.Step(ctx, prompt, 1, len(prompt), nil); err != nil {
						b.Fatal(err)
					}
					n = len(prompt)
					b.StartTimer()
				}
				if _, err := s.Step(ctx, next, 1, 1, nil); err != nil {
					b.Fatal(err)
				}
				n++
				next[0] = int64(i*31+7) % 50257
			}
			b.StopTimer()
			done()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}

// BenchmarkLM124MDecodeInterleaved is BenchmarkLM124MDecode with both sides open at once and
// their steps alternated (in-process first on even iterations, the plugin first on odd ones),
// so that load changes on a shared machine hit both alike: the ratio it reports is the figure
// to quote for the plugin's cost. Each iteration is one decode step on each side.
func BenchmarkLM124MDecodeInterleaved(b *testing.B) {
	prompt := benchIDs(64)
	ctx := context.Background()
	type side struct {
		open    func() (stepper, func())
		s       stepper
		done    func()
		n       int
		elapsed time.Duration
	}
	prefill := func(sd *side) {
		sd.s, sd.done = sd.open()
		if _, err := sd.s.Step(ctx, prompt, 1, len(prompt), nil); err != nil {
			b.Fatal(err)
		}
		sd.n = len(prompt)
	}
	sides := []*side{{open: open(b, "in-process")}, {open: open(b, "plugin")}}
	for _, sd := range sides {
		prefill(sd)
	}
	next := []int64{464}
	step := func(sd *side) {
		if sd.n >= 1000 { // stay inside the 1024-position context
			sd.done()
			prefill(sd)
		}
		start := time.Now()
		if _, err := sd.s.Step(ctx, next, 1, 1, nil); err != nil {
			b.Fatal(err)
		}
		sd.elapsed += time.Since(start)
		sd.n++
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		next[0] = int64(i*31+7) % 50257
		step(sides[i%2])
		step(sides[1-i%2])
	}
	b.StopTimer()
	for _, sd := range sides {
		sd.done()
	}
	in := float64(b.N) / sides[0].elapsed.Seconds()
	pl := float64(b.N) / sides[1].elapsed.Seconds()
	b.ReportMetric(in, "in-process-tokens/s")
	b.ReportMetric(pl, "plugin-tokens/s")
	b.ReportMetric(pl/in, "plugin/in-process")
}
