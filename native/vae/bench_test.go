package vae

import (
	"math/rand/v2"
	"syscall"
	"testing"
	"time"
)

// benchConfig is shaped like Stable Diffusion's VAE but narrower (SD uses [128,256,512,512]).
func benchConfig() Config {
	c := DefaultConfig()
	c.BlockOutChannels = []int{64, 128, 256, 256}
	c.LayersPerBlock = 2
	c.NormNumGroups = 32
	return c
}

func benchModel(b *testing.B) *Model {
	b.Helper()
	m, err := NewRandom(benchConfig(), 1)
	if err != nil {
		b.Fatal(err)
	}
	return m
}

func randomInput(n int) []float32 {
	r := rand.New(rand.NewPCG(1, 2))
	v := make([]float32, n)
	for i := range v {
		v[i] = 2*r.Float32() - 1
	}
	return v
}

// BenchmarkEncode256 encodes one 3×256×256 image.
func BenchmarkEncode256(b *testing.B) {
	m := benchModel(b)
	img := randomInput(3 * 256 * 256)
	b.ResetTimer()
	c0 := processCPU(b)
	for b.Loop() {
		if _, _, err := m.Encode(img, 1, 3, 256, 256); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, c0)
}

// BenchmarkDecode256 decodes one 4×32×32 latent to a 3×256×256 image.
func BenchmarkDecode256(b *testing.B) {
	m := benchModel(b)
	z := randomInput(4 * 32 * 32)
	b.ResetTimer()
	c0 := processCPU(b)
	for b.Loop() {
		if _, err := m.Decode(z, 1, 4, 32, 32); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, c0)
}

// processCPU is the process's user + system CPU time so far, all threads included.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the process's CPU time per call since c0 (cpu-ms/op), steadier than wall
// time on a shared machine.
func reportCPU(b *testing.B, c0 time.Duration) {
	b.ReportMetric(float64(processCPU(b)-c0)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
}
