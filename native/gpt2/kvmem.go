package gpt2

import (
	"log/slog"
	"runtime"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/modelrt/modelrt/native/kernels"
)

// The KV cache lives outside the Go heap, in anonymous mappings reserved for all n_positions
// at once. The kernel backs a page only when it is first written, and the cache's (B,H,S,D)
// layout writes positions in order within each (row, head) group, so the resident memory is
// what the positions stored so far need (rounded up to a page per group) — never the full
// reservation, no relayout as a session grows, and no copy left behind for the garbage
// collector: Release and the end of a session return the pages to the system at once, where a
// Go-heap cache stays resident until a collection runs (with the weights as the live heap,
// GOGC's headroom is tens of MiB). Where mapping fails the cache falls back to the Go heap and
// grows by doubling, as before.

// kvOffHeap is false in tests that exercise the Go-heap fallback.
var kvOffHeap = true

// kvMemory holds a cache's mappings. They are unmapped by Cache.Release or, for a cache
// dropped without it, by the cleanup attached to the Cache once it is unreachable.
type kvMemory struct {
	mu    sync.Mutex
	slabs [][]byte
}

// newKVMemory returns the memory of cache c.
func newKVMemory(c *Cache) *kvMemory {
	m := &kvMemory{}
	runtime.AddCleanup(c, func(m *kvMemory) { m.freeAll() }, m)
	return m
}

// mapAll points every layer's k and v (k16 and v16 for a half-precision cache) at a new
// mapping of n zero values; on failure it unmaps what it mapped and returns false, leaving the
// slices as they were (empty: it is only called on a cache without memory).
func (c *Cache) mapAll(n int) bool {
	if c.half {
		return mapLayers(c.mem, c.k16, c.v16, n)
	}
	return mapLayers(c.mem, c.k, c.v, n)
}

func mapLayers[T float32 | uint16](m *kvMemory, k, v [][]T, n int) bool {
	nk, nv := make([][]T, len(k)), make([][]T, len(v))
	for l := range nk {
		var ok1, ok2 bool
		nk[l], ok1 = mapValues[T](m, n)
		nv[l], ok2 = mapValues[T](m, n)
		if !ok1 || !ok2 {
			m.freeAll()
			return false
		}
	}
	copy(k, nk)
	copy(v, nv)
	return true
}

// mapValues maps n zero values outside the Go heap.
func mapValues[T float32 | uint16](m *kvMemory, n int) ([]T, bool) {
	if n <= 0 {
		return nil, false
	}
	var z T
	b, err := unix.Mmap(-1, 0, int(unsafe.Sizeof(z))*n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		slog.Debug("gpt2: KV cache stays on the Go heap", "err", err)
		return nil, false
	}
	// Huge pages would make a group's first write resident for 2 MiB of its neighbours.
	_ = unix.Madvise(b, unix.MADV_NOHUGEPAGE)
	m.mu.Lock()
	m.slabs = append(m.slabs, b)
	m.mu.Unlock()
	return unsafe.Slice((*T)(unsafe.Pointer(&b[0])), n), true
}

// freeAll unmaps every mapping.
func (m *kvMemory) freeAll() {
	m.mu.Lock()
	slabs := m.slabs
	m.slabs = nil
	m.mu.Unlock()
	for _, b := range slabs {
		if err := unix.Munmap(b); err != nil {
			slog.Warn("gpt2: KV cache unmap", "err", err)
		}
	}
}

// mapped reports how many bytes of the cache are mapped off the heap (reserved, not resident).
func (c *Cache) mapped() int64 {
	c.mem.mu.Lock()
	defer c.mem.mu.Unlock()
	var n int64
	for _, b := range c.mem.slabs {
		n += int64(len(b))
	}
	return n
}

// Release returns the cache's memory to the system and empties it (as Reset does); working
// buffers of at most stepKeepBytes go to the model's next NewCache instead. The cache stays
// usable: the next Forward reserves memory again. A backend calls it when a session ends, so
// that the next session does not wait for a garbage collection to get the pages back. The
// caller must not use a slice of the old cache afterwards (none is handed out).
func (c *Cache) Release() {
	clear(c.k)
	clear(c.v)
	clear(c.k16)
	clear(c.v16)
	c.mem.freeAll()
	c.mask, c.capacity = nil, 0
	c.owner.putSpare(c.buf)
	c.buf = step{}
	c.Reset()
}

// kvPopulate is false in tests that compare the cache with and without it.
var kvPopulate = true

// populate makes resident, ahead of the write, the pages of layer's keys and values that
// positions [s.P, s.P+s.T) of every (row, head) group will be written to, with one
// madvise(MADV_POPULATE_WRITE) per group and tensor. The kernel then fills those pages in a
// loop instead of taking a page fault for each on the first write; in this VM a fault cost
// ~3 µs of system time, and a fresh session's 64-token prefill of GPT-2 124M faulted in 1152
// pages of cache. It makes resident exactly the pages that the write would: a group whose
// range starts inside a page already written (that page is resident) and opens no new page is
// skipped, which is every decode step but one in 16 (float32, 64-value heads). It does nothing
// for a Go-heap cache, and a refusal (an old kernel) is ignored: the writes fault as before.
func (c *Cache) populate(layer int, s kernels.AttentionShape) {
	if !kvPopulate || len(c.mem.slabs) == 0 {
		return
	}
	if c.half {
		populateGroups(c.k16[layer], s)
		populateGroups(c.v16[layer], s)
		return
	}
	populateGroups(c.k[layer], s)
	populateGroups(c.v[layer], s)
}

func populateGroups[T float32 | uint16](x []T, s kernels.AttentionShape) {
	if len(x) == 0 {
		return
	}
	var z T
	size := int(unsafe.Sizeof(z))
	page := unix.Getpagesize()
	base := unsafe.Pointer(&x[0]) // the start of a mapping: page-aligned
	for g := 0; g < s.B*s.H; g++ {
		a := (g*s.S + s.P) * s.D * size // byte offsets in the mapping
		b := a + s.T*s.D*size
		if a%page != 0 && a/page == (b-1)/page {
			continue // within a page that position P−1 already made resident
		}
		lo, hi := a&^(page-1), (b+page-1)&^(page-1)
		// The mapping is whole pages, so [lo,hi) stays inside it.
		_ = unix.Madvise(unsafe.Slice((*byte)(unsafe.Add(base, lo)), hi-lo), unix.MADV_POPULATE_WRITE)
	}
}
