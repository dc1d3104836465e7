package gpt2

import (
	"fmt"
	"runtime/debug"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/modelrt/modelrt/sdk/modeldir/quant"
)

// BenchmarkPrefill64Session is BenchmarkPrefill64 as a plugin session runs it: a new cache, the
// 64-token prefill (timed), one decode step, Release, and the heap returned to the system when
// the native plugin would (debug.FreeOSMemory after the step that drops the prefill's buffers).
// "before" makes every page of a new session's cache and working buffers fault in on first
// write (no MADV_POPULATE_WRITE, no released cache's mappings reused, buffers dropped after
// every prefill and not handed on); "after" is the default (kvPopulate, kvSpareIdle,
// keepSteps). It reports the page faults and the system CPU time of the process during the
// prefill; the two alternate over three rounds. float32 weights (and cache), then int8 (fp16
// cache).
func BenchmarkPrefill64Session(b *testing.B) {
	for _, dt := range []string{"f32", "int8"} {
		b.Run(dt, func(b *testing.B) {
			m := smallModel(b)
			if dt == "int8" {
				m = quantizedModel(b, quant.Int8)
			}
			benchPrefill64Session(b, m)
		})
	}
}

func benchPrefill64Session(b *testing.B, m *Model) {
	const T = 64
	ids := benchIDs(T)
	logits := make([]float32, gpt2Small.VocabSize)
	defer func(p, k bool, d time.Duration) { kvPopulate, keepSteps, kvSpareIdle = p, k, d }(kvPopulate, keepSteps, kvSpareIdle)
	idle := kvSpareIdle
	for r := range 3 {
		for _, after := range []bool{false, true} {
			name := map[bool]string{false: "before", true: "after"}[after]
			b.Run(fmt.Sprintf("%s/%d", name, r), func(b *testing.B) {
				kvPopulate, keepSteps, kvSpareIdle = after, after, 0
				if after {
					kvSpareIdle = idle
				}
				var faults, sys int64
				for range b.N {
					b.StopTimer()
					c := m.NewCache(1)
					var r0, r1 unix.Rusage
					_ = unix.Getrusage(unix.RUSAGE_SELF, &r0)
					b.StartTimer()
					if err := m.Forward(c, ids, 1, T, nil, true, logits); err != nil {
						b.Fatal(err)
					}
					b.StopTimer()
					_ = unix.Getrusage(unix.RUSAGE_SELF, &r1)
					faults += r1.Minflt - r0.Minflt
					sys += r1.Stime.Nano() - r0.Stime.Nano()
					if err := m.Forward(c, ids[:1], 1, 1, nil, true, logits); err != nil {
						b.Fatal(err)
					}
					if c.Shrank() || !after {
						debug.FreeOSMemory()
					}
					c.Release()
					b.StartTimer()
				}
				b.ReportMetric(float64(faults)/float64(b.N), "faults/op")
				b.ReportMetric(float64(sys)/1e6/float64(b.N), "sys-ms/op")
			})
		}
	}
}
