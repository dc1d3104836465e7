package gpt2

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/modelrt/modelrt/sdk/modeldir/quant"
)

// cpuTime returns the process's user+system CPU time. On a machine shared with other busy
// processes, CPU time per token says more about the code than wall time does.
func cpuTime() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// gpt2Small is the shape of the 124M-parameter GPT-2 ("gpt2" on the hub).
var gpt2Small = Config{VocabSize: 50257, NPositions: 1024, NEmbd: 768, NLayer: 12, NHead: 12,
	LayerNormEpsilon: 1e-5, ActivationFunction: "gelu_new", BOSTokenID: 50256, EOSTokenID: 50256}

var (
	benchModelOnce sync.Once
	benchModel     *Model
	benchQMu       sync.Mutex
	benchQ         = map[quant.DType]*Model{}
)

// smallModel returns a random-weight 124M model, built once per test binary (about 500 MB of
// float32 weights; never written to disk).
func smallModel(b *testing.B) *Model {
	b.Helper()
	benchModelOnce.Do(func() { benchModel = NewRandom(gpt2Small, 1) })
	return benchModel
}

// quantizedModel returns the same random 124M model with weights quantized to dt, built once
// per test binary (without keeping the float32 one alive).
func quantizedModel(b *testing.B, dt quant.DType) *Model {
	b.Helper()
	benchQMu.Lock()
	defer benchQMu.Unlock()
	if m := benchQ[dt]; m != nil {
		return m
	}
	m := NewRandom(gpt2Small, 1)
	if err := m.Quantize(dt); err != nil {
		b.Fatal(err)
	}
	benchQ[dt] = m
	return m
}

func benchIDs(n int) []int64 {
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = int64((i*7919 + 13) % gpt2Small.VocabSize)
	}
	return ids
}

// BenchmarkPrefill64 runs a 64-token prompt at batch 1 into an empty cache, logits of the last
// position only (what generation needs).
func BenchmarkPrefill64(b *testing.B) { benchPrefill64(b, smallModel(b)) }

// BenchmarkPrefill64Int8 is BenchmarkPrefill64 with int8 weights: the int8 GEMM on quantized
// activations where the CPU has AVX512-VNNI, else the weights dequantized as the GEMM packs its
// panels.
func BenchmarkPrefill64Int8(b *testing.B) { benchPrefill64(b, quantizedModel(b, quant.Int8)) }

func benchPrefill64(b *testing.B, m *Model) {
	const T = 64
	c := m.NewCache(1)
	ids := benchIDs(T)
	logits := make([]float32, gpt2Small.VocabSize)
	b.ResetTimer()
	cpu0 := cpuTime()
	for range b.N {
		c.Reset()
		if err := m.Forward(c, ids, 1, T, nil, true, logits); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(T*b.N)/b.Elapsed().Seconds(), "tokens/s")
	b.ReportMetric(float64((cpuTime()-cpu0).Milliseconds())/float64(b.N), "cpu-ms/op")
}

// BenchmarkDecode measures one-token steps at batch 1 after a 64-token prompt; the cache is
// refilled when it nears n_positions, outside the timer.
func BenchmarkDecode(b *testing.B) { benchDecode(b, smallModel(b)) }

// BenchmarkDecodeInt8 is BenchmarkDecode with weight-only int8 (per-output-channel scales):
// a step streams ~125 MB of weights instead of ~500 MB.
func BenchmarkDecodeInt8(b *testing.B) { benchDecode(b, quantizedModel(b, quant.Int8)) }

// BenchmarkDecodeFP16 is BenchmarkDecode with float16 weights (~250 MB per step).
func BenchmarkDecodeFP16(b *testing.B) { benchDecode(b, quantizedModel(b, quant.F16)) }

// BenchmarkDecodeBatch is BenchmarkDecode at batch 2, 4 and 8 (tokens/s counts every row's
// token), float32 and int8.
func BenchmarkDecodeBatch(b *testing.B) {
	for _, dt := range []string{"f32", "int8"} {
		for _, batch := range []int{2, 4, 8} {
			b.Run(fmt.Sprintf("%s/B=%d", dt, batch), func(b *testing.B) {
				m := smallModel(b)
				if dt == "int8" {
					m = quantizedModel(b, quant.Int8)
				}
				benchDecodeB(b, m, batch)
			})
		}
	}
}

func benchDecode(b *testing.B, m *Model) { benchDecodeB(b, m, 1) }

func benchDecodeB(b *testing.B, m *Model, batch int) {
	c := m.NewCache(batch)
	prompt := make([]int64, 0, 64*batch)
	for range batch {
		prompt = append(prompt, benchIDs(64)...)
	}
	logits := make([]float32, batch*gpt2Small.VocabSize)
	next := make([]int64, batch)
	b.ResetTimer()
	var cpu, cpu0 time.Duration
	cpu0 = cpuTime()
	for i := range b.N {
		if c.Len() == 0 || c.Len() >= 256 {
			b.StopTimer()
			cpu += cpuTime() - cpu0
			c.Reset()
			if err := m.Forward(c, prompt, batch, 64, nil, true, logits); err != nil {
				b.Fatal(err)
			}
			cpu0 = cpuTime()
			b.StartTimer()
		}
		for r := range next {
			next[r] = int64((i + r) % gpt2Small.VocabSize)
		}
		if err := m.Forward(c, next, batch, 1, nil, true, logits); err != nil {
			b.Fatal(err)
		}
	}
	cpu += cpuTime() - cpu0
	b.ReportMetric(float64(batch*b.N)/b.Elapsed().Seconds(), "tokens/s")
	b.ReportMetric(float64(cpu.Microseconds())/1e3/float64(batch*b.N), "cpu-ms/token")
}
