package gpt2

import (
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/modelrt/modelrt/native/kernels"
)

// prefillPhases names the steps of Block.Forward that BenchmarkPrefillPhases times.
var prefillPhases = []string{"addln1", "qkv", "split", "attn", "proj", "addln2", "fc", "gelu", "fc2"}

// BenchmarkPrefillPhases is BenchmarkPrefill64 with the steps of each block timed apart (wall
// milliseconds per prefill, summed over the twelve blocks, and the calling thread's CPU time):
// it runs the same calls as Block.Forward, in the same order, with a clock read between them,
// all twelve blocks in full (no Block.forwardLast); "head" is the last residual add, ln_f and
// the LM head.
func BenchmarkPrefillPhases(b *testing.B) {
	m := smallModel(b)
	const T = 64
	c := m.NewCache(1)
	ids := benchIDs(T)
	logits := make([]float32, gpt2Small.VocabSize)
	spent := make([]time.Duration, len(prefillPhases)+1)
	cpu := make([]time.Duration, len(prefillPhases)+1)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b.ResetTimer()
	for range b.N {
		c.Reset()
		s := c.prepare(m.cfg, 1, T, nil)
		C := m.cfg.NEmbd
		for t := 0; t < T; t++ {
			m.embed(s.x[t*C:(t+1)*C], ids[t], s.pos[t])
		}
		for l := range m.Blocks {
			blk := &m.Blocks[l]
			timeBlockPhases(blk, s, l, spent, cpu)
		}
		t0, c0 := time.Now(), threadCPU()
		addInPlace(s.x[:T*C], s.pending)
		s.pending = nil
		m.LNF.Forward(s.lnf[:C], s.x[(T-1)*C:][:C])
		m.lmHead(logits, s.lnf[:C], 1)
		c.commit(1, T, nil)
		spent[len(prefillPhases)] += time.Since(t0)
		cpu[len(prefillPhases)] += threadCPU() - c0
	}
	for i, name := range append(prefillPhases, "head") {
		b.ReportMetric(float64(spent[i].Microseconds())/1e3/float64(b.N), name+"-ms")
		b.ReportMetric(float64(cpu[i].Microseconds())/1e3/float64(b.N), name+"-cpums")
	}
}

// threadCPU returns the calling thread's CPU time: the caller's own share of a phase, without
// the helpers' (all of it when GOMAXPROCS is 1).
func threadCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func timeBlockPhases(blk *Block, s *step, layer int, spent, cpu []time.Duration) {
	rows := s.B * s.T
	n := rows * blk.Attn.CProj.Out
	x, h := s.x[:n], s.h[:n]
	a := &blk.Attn
	c := a.NHead * a.HeadDim
	t, tc := time.Now(), threadCPU()
	lap := func(i int) {
		now, nc := time.Now(), threadCPU()
		spent[i] += now.Sub(t)
		cpu[i] += nc - tc
		t, tc = now, nc
	}
	blk.ln1(s, h, x)
	lap(0)
	qkv := s.qkv[:rows*3*c]
	a.CAttn.Forward(qkv, h, rows)
	lap(1)
	kc, vc := s.cache.k[layer], s.cache.v[layer]
	q := s.q[:rows*c]
	shape := kernels.AttentionShape{B: s.B, T: s.T, H: a.NHead, D: a.HeadDim, P: s.P, S: s.cache.capacity}
	kernels.SplitQKV(q, kc, vc, qkv, shape)
	lap(2)
	att := s.att[:rows*c]
	kernels.Attention(att, q, kc, vc, s.mask, shape)
	lap(3)
	a.CProj.Forward(s.proj[:rows*c], att, rows)
	lap(4)
	kernels.AddLayerNorm(h, x, s.proj[:n], blk.LN2.Weight, blk.LN2.Bias, len(blk.LN2.Weight), blk.LN2.Eps)
	lap(5)
	hid := s.hidden[:rows*blk.MLP.CFC.Out]
	blk.MLP.CFC.Forward(hid, h, rows)
	lap(6)
	kernels.GeluNew(hid, hid)
	lap(7)
	blk.MLP.CProj.Forward(s.proj[:n], hid, rows)
	s.pending = s.proj[:n]
	lap(8)
}
