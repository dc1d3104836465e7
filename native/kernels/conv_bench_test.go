package kernels

import (
	"strings"
	"syscall"
	"testing"
	"time"
)

// BenchmarkConv2D times Conv2D on the VAE's convolution shapes at 256×256 (the bench config's
// [64,128,256,256] channels): 3×3 stride 1 at each resolution, the stride-2 down-sampling conv
// after diffusers' (0,1,0,1) pad, and a 1×1 shortcut. GFLOP/s counts the direct convolution's
// 2·Cout·Cin·KH·KW multiply-adds per output, whatever the algorithm; cpu-ms/op is the process's
// CPU time per call, steadier than wall time on a shared machine. The weights are prepared
// once (ConvWeights), as the VAE runs them: the per-call figures leave out the transforms.
func BenchmarkConv2D(b *testing.B) {
	same := func(c, hw, cout int) Conv2DShape {
		return Conv2DShape{B: 1, Cin: c, H: hw, W: hw, Cout: cout, KH: 3, KW: 3, Stride: 1, PadTop: 1, PadBottom: 1, PadLeft: 1, PadRight: 1}
	}
	shapes := map[string]Conv2DShape{
		"3x3_64ch_256":    same(64, 256, 64),
		"3x3_128ch_128":   same(128, 128, 128),
		"3x3_256ch_64":    same(256, 64, 256),
		"3x3_256ch_32":    same(256, 32, 256),
		"3x3s2_64ch_256":  {B: 1, Cin: 64, H: 256, W: 256, Cout: 64, KH: 3, KW: 3, Stride: 2, PadBottom: 1, PadRight: 1},
		"3x3s2_128ch_128": {B: 1, Cin: 128, H: 128, W: 128, Cout: 128, KH: 3, KW: 3, Stride: 2, PadBottom: 1, PadRight: 1},
		"3x3s2_256ch_64":  {B: 1, Cin: 256, H: 64, W: 64, Cout: 256, KH: 3, KW: 3, Stride: 2, PadBottom: 1, PadRight: 1},
		"3x3_3to64_256":   same(3, 256, 64),
		"3x3_64to3_256":   same(64, 256, 3),
		"1x1_64to128_128": {B: 1, Cin: 64, H: 128, W: 128, Cout: 128, KH: 1, KW: 1, Stride: 1},
	}
	var names []string
	for _, name := range []string{"3x3_64ch_256", "3x3_128ch_128", "3x3_256ch_64", "3x3_256ch_32", "3x3s2_64ch_256", "3x3s2_128ch_128",
		"3x3s2_256ch_64", "3x3_3to64_256", "3x3_64to3_256", "1x1_64to128_128"} {
		if s := shapes[name]; useWinograd(s) && useWinograd43(s) {
			// Winograd F(2×2,3×3) and F(4×4,3×3), alternated.
			names = append(names, name+"/f22", name+"/f43")
			continue
		} else if s.KH == 1 || useWinograd(s) {
			names = append(names, name)
			continue
		}
		// The banded implicit GEMM and the im2col path it replaced, alternated, and the direct
		// convolution where it applies.
		names = append(names, name+"/im2col", name+"/banded")
		if useConvDirect(shapes[name]) {
			names = append(names, name+"/direct")
		}
	}
	for _, name := range names {
		base, variant, _ := strings.Cut(name, "/")
		s := shapes[base]
		b.Run(name, func(b *testing.B) {
			defer func(old, old43, direct bool) { convImplicit, winograd43, convDirectOn = old, old43, direct }(convImplicit, winograd43, convDirectOn)
			switch variant {
			case "im2col", "banded", "direct":
				convImplicit, convDirectOn = variant != "im2col", variant == "direct"
			case "f22", "f43":
				winograd43 = variant == "f43"
			}
			inp := randomVec(1, s.B*s.Cin*s.H*s.W, -1, 1)
			w := randomVec(2, s.Cout*s.Cin*s.KH*s.KW, -0.5, 0.5)
			bias := randomVec(3, s.Cout, -1, 1)
			out := make([]float32, s.B*s.Cout*s.OutH()*s.OutW())
			cw := NewConvWeights(w, s.Cout, s.Cin, s.KH, s.KW)
			Conv2DWeights(out, inp, cw, bias, s) // warm the pools, transform the weights
			b.ResetTimer()
			c0 := processCPU(b)
			for b.Loop() {
				Conv2DWeights(out, inp, cw, bias, s)
			}
			b.ReportMetric(float64(processCPU(b)-c0)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
			flop := 2 * float64(s.B*s.Cout*s.OutH()*s.OutW()*s.Cin*s.KH*s.KW)
			b.ReportMetric(flop*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// processCPU is the process's user + system CPU time so far, all threads included.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
