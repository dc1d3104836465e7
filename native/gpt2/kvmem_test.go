package gpt2

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/modelrt/modelrt/native/kernels"
	"github.com/modelrt/modelrt/sdk/modeldir/quant"
)

// residentBytes counts the resident pages of the cache's mappings (mincore).
func residentBytes(t *testing.T, c *Cache) int64 {
	t.Helper()
	return int64(bytes.Count(residentPages(t, c), []byte{1}) * os.Getpagesize())
}

// TestCacheResidentGrowsWithUse checks what the off-heap cache is for: it reserves n_positions
// but only the pages of the positions written become resident, and Release unmaps them.
func TestCacheResidentGrowsWithUse(t *testing.T) {
	for _, kv := range []quant.DType{quant.F32, quant.F16} {
		t.Run("kv="+string(kv), func(t *testing.T) { testCacheResidentGrowsWithUse(t, kv) })
	}
}

func testCacheResidentGrowsWithUse(t *testing.T, kv quant.DType) {
	cfg := Config{VocabSize: 64, NPositions: 1024, NEmbd: 128, NLayer: 2, NHead: 2,
		LayerNormEpsilon: 1e-5, ActivationFunction: "gelu_new", BOSTokenID: 63, EOSTokenID: 63}
	m := NewRandom(cfg, 5)
	if err := m.SetKVCache(kv); err != nil {
		t.Fatal(err)
	}
	size := int64(4)
	if kv == quant.F16 {
		size = 2
	}
	const B, T = 3, 40
	c := m.NewCache(B)
	ids := make([]int64, B*T)
	if err := m.Forward(c, ids, B, T, nil, true, make([]float32, B*cfg.VocabSize)); err != nil {
		t.Fatal(err)
	}
	groups := int64(2 * cfg.NLayer * B * cfg.NHead) // k and v of every (layer, row, head)
	full := groups * int64(cfg.NPositions*cfg.HeadDim()) * size
	if got := c.mapped(); got != full {
		t.Fatalf("mapped %d bytes, want n_positions' worth %d", got, full)
	}
	page := int64(os.Getpagesize())
	used := int64(T*cfg.HeadDim()) * size
	// Each group's positions are contiguous: its written bytes, rounded out to pages.
	limit := groups * ((used+page-1)/page + 1) * page
	res := residentBytes(t, c)
	if res < groups*used || res > limit {
		t.Errorf("%d positions of %d: %d bytes resident, want within [%d, %d] (reserved %d)", T, cfg.NPositions, res, groups*used, limit, full)
	}
	c.Release()
	if got := c.mapped(); got != 0 || c.Len() != 0 {
		t.Errorf("after Release: %d bytes mapped, Len %d; want 0, 0", got, c.Len())
	}
}

// TestCacheReleaseReuse checks that a released cache works again and gives the logits a fresh
// cache gives, bit for bit.
func TestCacheReleaseReuse(t *testing.T) {
	cfg := Config{VocabSize: 50, NPositions: 64, NEmbd: 16, NLayer: 2, NHead: 2,
		LayerNormEpsilon: 1e-5, ActivationFunction: "gelu_new", BOSTokenID: 49, EOSTokenID: 49}
	m := NewRandom(cfg, 9)
	ids := []int64{3, 1, 4, 1, 5, 9, 2, 6}
	run := func(c *Cache) []float32 {
		out := make([]float32, len(ids)*cfg.VocabSize)
		if err := m.Forward(c, ids, 1, len(ids), nil, false, out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	want := run(m.NewCache(1))
	c := m.NewCache(1)
	run(c)
	c.Release()
	got := run(c)
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("after Release: logit %d = %v, fresh cache %v", i, got[i], want[i])
		}
	}
}

// residentPages returns the mincore bits of every page of the cache's mappings, in order.
func residentPages(t *testing.T, c *Cache) []byte {
	t.Helper()
	page := os.Getpagesize()
	var all []byte
	c.mem.mu.Lock()
	defer c.mem.mu.Unlock()
	for _, b := range c.mem.slabs {
		vec := make([]byte, (len(b)+page-1)/page)
		if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
			t.Fatalf("mincore: %v", e)
		}
		for i := range vec {
			vec[i] &= 1
		}
		all = append(all, vec...)
	}
	return all
}

// TestPopulateSamePages checks that populating the cache ahead of its writes (kvPopulate) makes
// resident exactly the pages that the writes alone make resident, after a prefill and after each
// of the decode steps that follow (float32 and fp16 caches; groups of 16 and 32 positions a
// page, some of them not page-aligned: 96-value heads), and that the logits are the same.
func TestPopulateSamePages(t *testing.T) {
	defer func(p bool, d time.Duration) { kvPopulate, kvSpareIdle = p, d }(kvPopulate, kvSpareIdle)
	kvSpareIdle = 0 // each run maps its own cache
	for _, kv := range []quant.DType{quant.F32, quant.F16} {
		for _, d := range []int{64, 96} {
			t.Run(fmt.Sprintf("kv=%s,head=%d", kv, d), func(t *testing.T) {
				cfg := Config{VocabSize: 64, NPositions: 200, NEmbd: 2 * d, NLayer: 2, NHead: 2,
					LayerNormEpsilon: 1e-5, ActivationFunction: "gelu_new", BOSTokenID: 63, EOSTokenID: 63}
				m := NewRandom(cfg, 5)
				if err := m.SetKVCache(kv); err != nil {
					t.Fatal(err)
				}
				const B, T, steps = 2, 23, 40
				type trace struct {
					pages  [][]byte
					logits []float32
				}
				run := func(populate bool) trace {
					kvPopulate = populate
					c := m.NewCache(B)
					defer c.Release()
					var tr trace
					logits := make([]float32, B*cfg.VocabSize)
					ids := make([]int64, B*T)
					for i := range ids {
						ids[i] = int64(i % cfg.VocabSize)
					}
					for s := 0; s <= steps; s++ {
						if err := m.Forward(c, ids, B, len(ids)/B, nil, true, logits); err != nil {
							t.Fatal(err)
						}
						tr.pages = append(tr.pages, residentPages(t, c))
						tr.logits = append(tr.logits, logits...)
						ids = ids[:B]
					}
					return tr
				}
				off, on := run(false), run(true)
				for s := range off.pages {
					if !bytes.Equal(on.pages[s], off.pages[s]) {
						n := func(v []byte) int { return bytes.Count(v, []byte{1}) }
						t.Fatalf("after step %d: %d pages resident with populate, %d without (of %d); first difference at page %d",
							s, n(on.pages[s]), n(off.pages[s]), len(off.pages[s]), firstDiff(on.pages[s], off.pages[s]))
					}
				}
				if last := off.pages[len(off.pages)-1]; bytes.Count(last, []byte{1}) == 0 || !bytes.Contains(last, []byte{0}) {
					t.Fatalf("the test covers nothing: %d of %d pages resident", bytes.Count(last, []byte{1}), len(last))
				}
				for i := range off.logits {
					if math.Float32bits(on.logits[i]) != math.Float32bits(off.logits[i]) {
						t.Fatalf("logit %d = %v with populate, %v without", i, on.logits[i], off.logits[i])
					}
				}
			})
		}
	}
}

func firstDiff(a, b []byte) int {
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

// TestPopulateMakesResident checks that populate itself makes a step's pages resident before
// anything is written to them: layer 0's keys and values of positions [0,T) of every group, and
// no page of layer 1.
func TestPopulateMakesResident(t *testing.T) {
	cfg := Config{VocabSize: 64, NPositions: 256, NEmbd: 128, NLayer: 2, NHead: 2,
		LayerNormEpsilon: 1e-5, ActivationFunction: "gelu_new", BOSTokenID: 63, EOSTokenID: 63}
	m := NewRandom(cfg, 5)
	const B, T = 2, 40
	c := m.NewCache(B)
	defer c.Release()
	c.prepare(cfg, B, T, nil)
	if n := bytes.Count(residentPages(t, c), []byte{1}); n != 0 {
		t.Fatalf("%d pages resident before anything was written", n)
	}
	c.populate(0, kernels.AttentionShape{B: B, T: T, H: cfg.NHead, D: cfg.HeadDim(), P: 0, S: c.capacity})
	page := os.Getpagesize()
	perGroup := (T*cfg.HeadDim()*4 + page - 1) / page
	want := 2 * B * cfg.NHead * perGroup // k and v of layer 0
	if got := bytes.Count(residentPages(t, c), []byte{1}); got != want {
		t.Fatalf("populate made %d pages resident, want %d (%d groups × 2 × %d pages)", got, want, B*cfg.NHead, perGroup)
	}
}

// TestStepBuffersHandedOn checks the working buffers' life (stepKeepBytes): a small prefill's
// stay with its cache through the decode steps after it and go to the model's next NewCache
// after Release, which then computes what a cache of its own computes, bit for bit (nothing of
// the last session's state leaks); a prefill's buffers over stepKeepBytes are dropped at the
// first decode step, Shrank reports it once, and they are not handed on.
func TestStepBuffersHandedOn(t *testing.T) {
	cfg := Config{VocabSize: 50, NPositions: 256, NEmbd: 64, NLayer: 2, NHead: 2,
		LayerNormEpsilon: 1e-5, ActivationFunction: "gelu_new", BOSTokenID: 49, EOSTokenID: 49}
	m := NewRandom(cfg, 9)
	ids := func(n, seed int) []int64 {
		v := make([]int64, n)
		for i := range v {
			v[i] = int64((i*7 + seed) % cfg.VocabSize)
		}
		return v
	}
	forward := func(c *Cache, B int, x []int64) []float32 {
		out := make([]float32, B*cfg.VocabSize)
		if err := c.owner.Forward(c, x, B, len(x)/B, nil, true, out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	// The reference: a second session's prompt and two steps on a model that never had a cache.
	fresh := NewRandom(cfg, 9)
	ref := fresh.NewCache(1)
	want := forward(ref, 1, ids(30, 2))
	wantNext := forward(ref, 1, ids(1, 5))

	small := m.NewCache(1)
	forward(small, 1, ids(40, 1)) // 40 rows: well under stepKeepBytes
	x0, pb := &small.buf.x[:1][0], small.buf.bytes()
	forward(small, 1, ids(1, 3))
	if small.Shrank() || &small.buf.x[:1][0] != x0 {
		t.Fatalf("a decode step after a prefill of %d bytes of buffers dropped them (kept up to %d)", pb, stepKeepBytes)
	}
	small.Release()
	next := m.NewCache(1)
	if next.buf.x == nil || &next.buf.x[:1][0] != x0 {
		t.Fatal("NewCache after Release did not take the released cache's buffers")
	}
	got := forward(next, 1, ids(30, 2))
	gotNext := forward(next, 1, ids(1, 5))
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) || math.Float32bits(gotNext[i]) != math.Float32bits(wantNext[i]) {
			t.Fatalf("on handed-on buffers: logit %d = %v then %v, a cache of its own gives %v then %v", i, got[i], gotNext[i], want[i], wantNext[i])
		}
	}
	next.Release()

	// Over stepKeepBytes: 8 rows of 200 positions.
	big := m.NewCache(8)
	forward(big, 8, ids(8*200, 4))
	if b := big.buf.bytes(); b <= stepKeepBytes {
		t.Fatalf("the large prefill's buffers are %d bytes, not over stepKeepBytes %d: the test needs a larger one", b, stepKeepBytes)
	}
	if big.Shrank() {
		t.Fatal("Shrank before any decode step")
	}
	forward(big, 8, ids(8, 6))
	if !big.Shrank() || big.Shrank() {
		t.Fatal("Shrank did not report the dropped prefill buffers exactly once")
	}
	m.takeSpare() // the small session's buffers, if still kept
	big.Release()
	if s := m.takeSpare(); s.x != nil && s.bytes() > stepKeepBytes {
		t.Fatalf("Release handed on %d bytes of buffers, over stepKeepBytes", s.bytes())
	}
}

// TestKVSpareReuse checks kvSpare: a released cache's mappings go to the next NewCache of the
// same batch size and KV type with only its prompt's pages still resident, and the new cache
// computes what a cache of its own computes, bit for bit,
// though its pages hold the last session's keys and values (a longer session before a shorter
// one, then decode steps past where the first one stopped); populate then skips the pages
// already resident. A NewCache of another batch size unmaps the spare before mapping its own,
// and an idle spare is unmapped after kvSpareIdle.
func TestKVSpareReuse(t *testing.T) {
	defer func(d time.Duration) { kvSpareIdle = d }(kvSpareIdle)
	kvSpareIdle = time.Hour // the timer is tested below
	for _, kv := range []quant.DType{quant.F32, quant.F16} {
		t.Run("kv="+string(kv), func(t *testing.T) {
			cfg := Config{VocabSize: 50, NPositions: 128, NEmbd: 64, NLayer: 2, NHead: 2,
				LayerNormEpsilon: 1e-5, ActivationFunction: "gelu_new", BOSTokenID: 49, EOSTokenID: 49}
			session := func(m *Model, c *Cache, prompt, steps, seed int) []float32 {
				var all []float32
				ids := make([]int64, 2*prompt)
				for i := range ids {
					ids[i] = int64((i*11 + seed) % cfg.VocabSize)
				}
				for s := 0; s <= steps; s++ {
					out := make([]float32, 2*cfg.VocabSize)
					if err := m.Forward(c, ids, 2, len(ids)/2, nil, true, out); err != nil {
						t.Fatal(err)
					}
					all = append(all, out...)
					ids = []int64{int64((s + seed) % cfg.VocabSize), int64((3*s + seed) % cfg.VocabSize)}
				}
				return all
			}
			own := NewRandom(cfg, 9)
			if err := own.SetKVCache(kv); err != nil {
				t.Fatal(err)
			}
			want := session(own, own.NewCache(2), 7, 30, 1)

			m := NewRandom(cfg, 9)
			if err := m.SetKVCache(kv); err != nil {
				t.Fatal(err)
			}
			first := m.NewCache(2)
			session(m, first, 20, 60, 2) // a 20-position prompt and 60 steps of another session
			slab := &first.mem.slabs[0][0]
			first.Release()
			if first.mapped() != 0 {
				t.Fatalf("after Release the cache still maps %d bytes", first.mapped())
			}
			second := m.NewCache(2)
			if &second.mem.slabs[0][0] != slab {
				t.Fatal("NewCache after Release did not take the released cache's mappings")
			}
			// Only the prompt's pages stay resident: one page per (layer, k/v, row, head)
			// group here (groups of 16 KiB, or 8 KiB in fp16, page-aligned; 20 positions
			// fit in the first page).
			if second.mem.written != 20 {
				t.Fatalf("the reused mappings say %d positions written, want the prompt's 20", second.mem.written)
			}
			groups := 2 * cfg.NLayer * 2 * cfg.NHead
			if got, want := residentBytes(t, second), int64(groups*os.Getpagesize()); got != want {
				t.Fatalf("the reused mappings hold %d bytes resident, want the prompt's pages: %d", got, want)
			}
			got := session(m, second, 7, 30, 1)
			for i := range want {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("on reused mappings: logit %d (step %d) = %v, a cache of its own gives %v", i, i/(2*cfg.VocabSize), got[i], want[i])
				}
			}
			second.Release()
			if m.kvSpare.slabs == nil {
				t.Fatal("Release did not keep the mappings")
			}
			other := m.NewCache(3)
			defer other.Release()
			if m.kvSpare.slabs != nil || &other.mem.slabs[0][0] == slab {
				t.Fatal("a NewCache of batch 3 did not unmap the spare of batch 2")
			}
		})
	}
	t.Run("idle", func(t *testing.T) {
		kvSpareIdle = 20 * time.Millisecond
		m := NewRandom(Config{VocabSize: 50, NPositions: 64, NEmbd: 32, NLayer: 1, NHead: 2,
			LayerNormEpsilon: 1e-5, ActivationFunction: "gelu_new", BOSTokenID: 49, EOSTokenID: 49}, 3)
		m.NewCache(1).Release()
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			m.kvSpare.mu.Lock()
			kept := m.kvSpare.slabs != nil
			m.kvSpare.mu.Unlock()
			if !kept {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the spare was still mapped 5 s after Release (kvSpareIdle %v)", kvSpareIdle)
			}
		}
	})
}

// TestKVSpareDoesNotKeepModel checks that a kept spare (its timer pending for an hour) does not
// keep its model reachable: once the model is dropped, a collection runs its cleanups, which
// unmap the spare as well as the weights.
func TestKVSpareDoesNotKeepModel(t *testing.T) {
	defer func(d time.Duration) { kvSpareIdle = d }(kvSpareIdle)
	kvSpareIdle = time.Hour
	m := NewRandom(Config{VocabSize: 50, NPositions: 64, NEmbd: 32, NLayer: 1, NHead: 2,
		LayerNormEpsilon: 1e-5, ActivationFunction: "gelu_new", BOSTokenID: 49, EOSTokenID: 49}, 3)
	m.NewCache(1).Release()
	k := m.kvSpare
	if k.slabs == nil {
		t.Fatal("Release kept no mappings")
	}
	m = nil
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		runtime.GC()
		k.mu.Lock()
		kept := k.slabs != nil
		k.mu.Unlock()
		if !kept {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the spare was still mapped 5 s after its model was dropped: something keeps the model reachable")
		}
	}
}
