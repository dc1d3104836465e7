//go:build cgo

package export_test

import (
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/modelrt/modelrt/native/vae"
	"github.com/modelrt/modelrt/onnx/export"
	"github.com/modelrt/modelrt/onnx/internal/orttest"
)

// benchVAEConfig is shaped like Stable Diffusion's VAE but narrower (SD uses [128,256,512,512]);
// it is native/vae's benchmark config.
func benchVAEConfig() vae.Config {
	c := vae.DefaultConfig()
	c.BlockOutChannels = []int{64, 128, 256, 256}
	c.LayersPerBlock = 2
	c.NormNumGroups = 32
	return c
}

// BenchmarkVAE256 encodes a 3×256×256 image and decodes its 4×32×32 mean, on native/vae and on
// ONNX Runtime running ExportVAE's graphs of the same random weights (written to a temp dir),
// both with GOMAXPROCS threads. One iteration runs both engines; the metrics are each engine's
// wall milliseconds per encode+decode, their ratio, and each engine's process CPU seconds.
func BenchmarkVAE256(b *testing.B) {
	orttest.Init(b)
	src, out := b.TempDir(), b.TempDir()
	if err := export.WriteRandomVAE(src, benchVAEConfig(), 1); err != nil {
		b.Fatal(err)
	}
	if err := export.ExportVAE(src, out, export.Options{}); err != nil {
		b.Fatal(err)
	}
	m, err := vae.Load(src)
	if err != nil {
		b.Fatal(err)
	}
	threads := runtime.GOMAXPROCS(0)
	session := func(part, in, outName string) *ort.DynamicAdvancedSession {
		o, err := ort.NewSessionOptions()
		if err != nil {
			b.Fatal(err)
		}
		defer o.Destroy()
		if err := o.SetIntraOpNumThreads(threads); err != nil {
			b.Fatal(err)
		}
		if err := o.SetInterOpNumThreads(1); err != nil {
			b.Fatal(err)
		}
		s, err := ort.NewDynamicAdvancedSession(filepath.Join(out, part, export.ModelFile), []string{in}, []string{outName}, o)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Destroy() })
		return s
	}
	enc := session(export.VAEEncoderDir, export.VAEEncoderInput, export.VAEEncoderOutput)
	dec := session(export.VAEDecoderDir, export.VAEDecoderInput, export.VAEDecoderOutput)

	r := rand.New(rand.NewPCG(1, 2))
	img := make([]float32, 3*256*256)
	for i := range img {
		img[i] = 2*r.Float32() - 1
	}
	imgT := orttest.Tensor(b, []int64{1, 3, 256, 256}, img)
	latT := orttest.Tensor(b, []int64{1, 4, 32, 32}, make([]float32, 4*32*32))

	var nativeD, ortD, nativeCPU, ortCPU time.Duration
	b.ResetTimer()
	for b.Loop() {
		c0 := cpuTime(b)
		t0 := time.Now()
		mean, _, err := m.Encode(img, 1, 3, 256, 256)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := m.Decode(mean, 1, 4, 32, 32); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		c1 := cpuTime(b)
		params := []ort.Value{nil}
		if err := enc.Run([]ort.Value{imgT}, params); err != nil {
			b.Fatal(err)
		}
		copy(latT.GetData(), params[0].(*ort.Tensor[float32]).GetData()[:4*32*32])
		params[0].Destroy()
		image := []ort.Value{nil}
		if err := dec.Run([]ort.Value{latT}, image); err != nil {
			b.Fatal(err)
		}
		image[0].Destroy()
		t2 := time.Now()
		c2 := cpuTime(b)
		nativeD += t1.Sub(t0)
		ortD += t2.Sub(t1)
		nativeCPU += c1 - c0
		ortCPU += c2 - c1
	}
	n := float64(b.N)
	b.ReportMetric(nativeD.Seconds()*1000/n, "native-ms")
	b.ReportMetric(ortD.Seconds()*1000/n, "onnxrt-ms")
	b.ReportMetric(float64(nativeD)/float64(ortD), "native/onnxrt")
	b.ReportMetric(nativeCPU.Seconds()/n, "native-cpu-s")
	b.ReportMetric(ortCPU.Seconds()/n, "onnxrt-cpu-s")
}

// cpuTime is the CPU time (user + system) of the whole process so far, all threads included
// (ONNX Runtime's too); a shared machine disturbs it less than wall time.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
