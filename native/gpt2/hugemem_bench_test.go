package gpt2

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/modelrt/modelrt/native/kernels"
)

// BenchmarkDecodeWeightMem is BenchmarkDecode with the float32 matrices on the Go heap ("heap"),
// in a mapping of 4 KiB pages ("map4k") and in one advised for huge pages ("huge"), the three
// alternated over three rounds.
func BenchmarkDecodeWeightMem(b *testing.B) {
	for r := range 3 {
		for _, v := range []string{"heap", "map4k", "huge"} {
			b.Run(fmt.Sprintf("%s/%d", v, r), func(b *testing.B) {
				m := weightMemModels[v]
				if m == nil {
					weightsOffHeap, kernels.UseHugePages = v != "heap", v == "huge"
					m = NewRandom(gpt2Small, 1)
					weightsOffHeap, kernels.UseHugePages = true, true
					weightMemModels[v] = m
					b.Logf("%s: %s", v, anonHuge())
				}
				benchDecode(b, m)
			})
		}
	}
}

var weightMemModels = map[string]*Model{}

func anonHuge() string {
	s, _ := os.ReadFile("/proc/self/smaps_rollup")
	for _, l := range strings.Split(string(s), "\n") {
		if strings.HasPrefix(l, "AnonHugePages") {
			return strings.Join(strings.Fields(l), " ")
		}
	}
	return "?"
}
