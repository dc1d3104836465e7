package main

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/modelrt/modelrt/runtime/bench"
	"github.com/modelrt/modelrt/runtime/generate"
	"github.com/modelrt/modelrt/runtime/lm"
	"github.com/modelrt/modelrt/sdk"
	"github.com/modelrt/modelrt/sdk/modeldir"
	"github.com/modelrt/modelrt/sdk/modeldir/quant"
)

// TestPeakRSSWithinBound loads a GPT-2 of bench.Quick's shape (6 layers × 384, GPT-2's 50257
// tokens: 115 MiB of float32 weights, 31 MiB as int8) in the real plugin, decodes 32 tokens
// after a 32-token prompt at batch 1 and 8 like `modelrt bench`, and checks the plugin's peak
// RSS (VmHWM, as the bench reads it) against issue 17's bound, 1.15 × weights + 64 MiB, plus the
// float32 KV cache the batch-8 decode must hold (9.4 MB here; 113 MB for the bench's 124M
// workload, which no allowance of 64 MiB could hold). It is a check of memory, not of time:
// what it catches is a second copy of the weights (the file's pages kept mapped, a heap copy
// beside the packed one), KV caches kept after their session, or garbage left to pile up —
// 2 × 115 MiB is well over the 205 MiB bound. The 124M model's figures are in `modelrt bench`'s
// output (too big for every test run: 500 MB of weights).
func TestPeakRSSWithinBound(t *testing.T) {
	const prompt, newTokens = 32, 32
	if testing.Short() {
		t.Skip("-short: writes 120 MB of weights")
	}
	dir := t.TempDir()
	cfg := bench.Quick().GPT2
	fp32, int8 := filepath.Join(dir, "gpt2"), filepath.Join(dir, "gpt2-int8")
	if err := bench.WriteRandomGPT2(fp32, cfg, 1); err != nil {
		t.Fatal(err)
	}
	if err := modeldir.QuantizeGPT2(fp32, int8, quant.Int8); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{fp32, int8} {
		t.Run(filepath.Base(d), func(t *testing.T) {
			p := start(t, "", nil)
			ctx := context.Background()
			m, err := lm.Load(ctx, p, "gpt2", d, nil)
			if err != nil {
				t.Fatal(err)
			}
			st, err := p.Stats(ctx, &sdk.StatsRequest{})
			if err != nil || len(st.Models) != 1 || st.Models[0].WeightBytes <= 0 {
				t.Fatalf("stats: %v, %+v; want one model with its weight bytes", err, st)
			}
			weights := st.Models[0].WeightBytes
			loaded := peakRSS(t, p.Pid()) << 10
			sampling := generate.DefaultSampling()
			sampling.Temperature = 0
			for _, B := range []int{1, 8} {
				sess, err := m.Open(ctx, B)
				if err != nil {
					t.Fatal(err)
				}
				prompts := make([][]int, B)
				for r := range prompts {
					for i := range prompt {
						prompts[r] = append(prompts[r], (1+7919*(r*prompt+i))%(cfg.VocabSize-1))
					}
				}
				if _, err := generate.Generate(ctx, sess, prompts, generate.Options{MaxNewTokens: newTokens, MaxContext: m.Context, Sampling: sampling}); err != nil {
					t.Fatal(err)
				}
				sess.Close()
			}
			peak := peakRSS(t, p.Pid()) << 10
			shape := bench.Quick()
			shape.PromptTokens, shape.NewTokens = prompt, newTokens
			bound := bench.RSSTargetMiB(weights) + mib(shape.KVBytes(8))
			msg := fmt.Sprintf("weights %.1f MiB: peak RSS %.1f MiB after load, %.1f MiB after decoding; bound (with the KV cache) %.1f MiB",
				mib(weights), mib(loaded), mib(peak), bound)
			t.Log(msg)
			if mib(peak) > bound {
				t.Errorf("%s: over the bound", msg)
			}
		})
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
