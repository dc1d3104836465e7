package gpt2

import (
	"os"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/modelrt/modelrt/sdk/modeldir/quant"
)

// residentBytes counts the resident pages of the cache's mappings (mincore).
func residentBytes(t *testing.T, c *Cache) int64 {
	t.Helper()
	page := os.Getpagesize()
	var n int64
	c.mem.mu.Lock()
	defer c.mem.mu.Unlock()
	for _, b := range c.mem.slabs {
		vec := make([]byte, (len(b)+page-1)/page)
		if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
			t.Fatalf("mincore: %v", e)
		}
		for _, v := range vec {
			if v&1 != 0 {
				n += int64(page)
			}
		}
	}
	return n
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
