package gpt2

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/modelrt/modelrt/native/kernels"
	"github.com/modelrt/modelrt/sdk/modeldir/quant"
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

// BenchmarkDecodeInt8Mem is BenchmarkDecodeInt8 at batch 1 and 8 with the int8 matrices on the
// Go heap ("heap") or in the huge-page mapping ("huge"), both with the default fp16 KV cache,
// and in the mapping with a float32 KV cache ("huge-kv32"); alternated over three rounds.
func BenchmarkDecodeInt8Mem(b *testing.B) {
	for r := range 3 {
		for _, batch := range []int{1, 8} {
			for _, v := range []string{"heap", "huge", "huge-kv32"} {
				b.Run(fmt.Sprintf("B=%d/%s/%d", batch, v, r), func(b *testing.B) {
					m := int8MemModels[v]
					if m == nil {
						weightsOffHeap = v != "heap"
						m = NewRandom(gpt2Small, 1)
						if err := m.Quantize(quant.Int8); err != nil {
							b.Fatal(err)
						}
						weightsOffHeap = true
						if v == "huge-kv32" {
							if err := m.SetKVCache(quant.F32); err != nil {
								b.Fatal(err)
							}
						}
						int8MemModels[v] = m
						b.Logf("%s: %s", v, anonHuge())
					}
					benchDecodeB(b, m, batch)
				})
			}
		}
	}
}

var int8MemModels = map[string]*Model{}
