package kernels

import "fmt"

func checkUpsample(out, inp []float32, n, h, w int) {
	if n <= 0 || h <= 0 || w <= 0 || len(inp) != n*h*w || len(out) != 4*n*h*w {
		panic(fmt.Sprintf("kernels: upsample nearest 2x: input %d, output %d values for N=%d H=%d W=%d", len(inp), len(out), n, h, w))
	}
}

// UpsampleNearest2xNaive is the reference nearest-neighbour 2× upsampling
// (torch.nn.functional.interpolate(scale_factor=2, mode="nearest")):
//
//	out[n, y, x] = inp[n, ⌊y/2⌋, ⌊x/2⌋]
//
// inp: (N,H,W) with N = B·C planes; out: (N,2H,2W). It panics when a length does not match.
func UpsampleNearest2xNaive(out, inp []float32, n, h, w int) {
	checkUpsample(out, inp, n, h, w)
	for p := 0; p < n; p++ {
		for y := 0; y < 2*h; y++ {
			for x := 0; x < 2*w; x++ {
				out[(p*2*h+y)*2*w+x] = inp[(p*h+y/2)*w+x/2]
			}
		}
	}
}

// UpsampleNearest2x computes the same as UpsampleNearest2xNaive: each input row is widened once
// and the result copied to both output rows, planes spread over GOMAXPROCS goroutines.
func UpsampleNearest2x(out, inp []float32, n, h, w int) {
	checkUpsample(out, inp, n, h, w)
	parallelRange(n, 4*h*w, func(lo, hi int) {
		for p := lo; p < hi; p++ {
			for y := 0; y < h; y++ {
				src := inp[(p*h+y)*w : (p*h+y+1)*w]
				row := out[(p*2*h+2*y)*2*w : (p*2*h+2*y+1)*2*w]
				for x, v := range src {
					row[2*x] = v
					row[2*x+1] = v
				}
				copy(out[(p*2*h+2*y+1)*2*w:(p*2*h+2*y+2)*2*w], row)
			}
		}
	})
}
