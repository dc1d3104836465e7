package gpt2

import "testing"

// BenchmarkForwardBatchPrefill64 is BenchmarkPrefill64 through ForwardBatch (the daemon's
// continuous batching): one item of 64 new tokens beside one decode token of another session.
func BenchmarkForwardBatchPrefill64(b *testing.B) {
	m := smallModel(b)
	const T = 64
	ids := benchIDs(T)
	c, d := m.NewCache(1), m.NewCache(1)
	logits := make([]float32, 2*gpt2Small.VocabSize)
	b.ResetTimer()
	cpu0 := cpuTime()
	for range b.N {
		c.Reset()
		d.Reset()
		if err := m.ForwardBatch([]BatchItem{{Cache: c, IDs: ids}, {Cache: d, IDs: ids[:1]}}, logits); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64((cpuTime()-cpu0).Milliseconds())/float64(b.N), "cpu-ms/op")
}
