package gpt2

import (
	"log/slog"
	"runtime"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/modelrt/modelrt/native/kernels"
)

// The KV cache lives outside the Go heap, in anonymous mappings reserved for all n_positions
// at once. The kernel backs a page only when it is first written, and the cache's (B,H,S,D)
// layout writes positions in order within each (row, head) group, so the resident memory is
// what the positions stored so far need (rounded up to a page per group) — never the full
// reservation, no relayout as a session grows, and no copy left behind for the garbage
// collector: Release and the end of a session return the pages to the system — at once, or,
// for the prompt's pages of the last released cache, when the next session turns out to need
// another shape or after kvSpareIdle (kvSpare) — where a Go-heap cache stays resident until a
// collection runs (with the weights as the live heap, GOGC's headroom is tens of MiB). Where
// mapping fails the cache falls back to the Go heap and grows by doubling, as before.

// kvOffHeap is false in tests that exercise the Go-heap fallback.
var kvOffHeap = true

// kvMemory holds a cache's mappings. They are unmapped by Cache.Release or, for a cache
// dropped without it, by the cleanup attached to the Cache once it is unreachable.
type kvMemory struct {
	mu    sync.Mutex
	slabs [][]byte
	// written: positions [0, written) of every group have been written at least once in the
	// mappings' life (they may come from a released cache, kvSpare), so their pages are
	// resident and populate skips them. Only the cache's own goroutine touches it.
	written int
	// prompt is the number of positions the cache's first call wrote (its prompt).
	prompt int
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
	if c.owner.kvSpare.take(c) {
		return true
	}
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
	m.slabs, m.written = nil, 0
	m.mu.Unlock()
	unmap(slabs)
}

func unmap(slabs [][]byte) {
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
	if !c.owner.kvSpare.keep(c) {
		c.mem.freeAll()
	}
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
	if lo := max(s.P, c.mem.written); lo > s.P {
		// Positions below written are resident already (a reused mapping, kvSpare).
		if lo >= s.P+s.T {
			return
		}
		s.T, s.P = s.P+s.T-lo, lo
	}
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

// kvSpareIdle is how long a released cache's mappings wait for the next NewCache of the same
// batch size and KV type before they are unmapped. A plugin serves a generation as one session:
// open, prefill, decode, close. Unmapping at close and mapping again at the next open made every
// new session's prefill fault (or populate) its cache's pages in again: 1152 pages, ~2.5 ms of
// system time, for a 64-token prefill of GPT-2 124M. Kept, their prompt's pages are still
// resident (trimGroups) and are written over; what a new session reads is only what it wrote
// itself (positions [0, Len)).
var kvSpareIdle = 2 * time.Second

// kvSpare holds the mappings of the last released off-heap cache of a model. At most one is
// kept, and a NewCache of another shape unmaps it before mapping its own, so that two caches'
// pages are never resident for one; a timer unmaps it after kvSpareIdle. It is allocated apart
// from its Model, which the pending timer must not keep alive: an unloaded model's weights are
// unmapped by the Model's cleanup as soon as it is unreachable (UnloadModel collects at once).
type kvSpare struct {
	mu      sync.Mutex
	slabs   [][]byte
	written int
	batch   int
	half    bool
	gen     uint64 // which keep the pending timer belongs to
}

// newKVSpare returns m's spare, unmapped when m becomes unreachable (with its weights).
func newKVSpare(m *Model) *kvSpare {
	k := &kvSpare{}
	runtime.AddCleanup(m, func(k *kvSpare) { k.drop(0) }, k)
	return k
}

// keep takes c's mappings for the next cache and reports whether it did (false: the caller
// unmaps them).
func (k *kvSpare) keep(c *Cache) bool {
	if kvSpareIdle <= 0 {
		return false
	}
	c.mem.mu.Lock()
	slabs, written, prompt := c.mem.slabs, c.mem.written, c.mem.prompt
	c.mem.slabs, c.mem.written, c.mem.prompt = nil, 0, 0
	c.mem.mu.Unlock()
	if len(slabs) == 0 {
		return true
	}
	written = trimGroups(slabs, c.owner.cfg, c.half, min(prompt, written))
	k.mu.Lock()
	defer k.mu.Unlock()
	unmap(k.slabs)
	k.slabs, k.written, k.batch, k.half = slabs, written, c.batch, c.half
	k.gen++
	gen := k.gen
	time.AfterFunc(kvSpareIdle, func() { k.drop(gen) })
	return true
}

// trimGroups returns to the system the pages of every (row, head) group of slabs past position
// keep, and returns the positions that stay resident. What is kept is the pages of the first
// call's positions (a prompt), which the next session's prefill of similar length writes over:
// the decode's positions went back at Release before the spare existed, and the next session's
// prefill buffers must come on top of what a new cache holds at that point, not of a full one
// (modelrt bench's batch-8 peak RSS went 27 MB over its bound). Pages shared by two groups stay.
func trimGroups(slabs [][]byte, cfg Config, half bool, keep int) int {
	size := 4
	if half {
		size = 2
	}
	d, page := cfg.HeadDim(), unix.Getpagesize()
	group := cfg.NPositions * d * size
	for _, slab := range slabs {
		for g := 0; (g+1)*group <= len(slab); g++ {
			lo := (g*group + keep*d*size + page - 1) / page * page
			hi := (g + 1) * group / page * page
			if hi > lo {
				_ = unix.Madvise(slab[lo:hi], unix.MADV_DONTNEED)
			}
		}
	}
	return keep
}

// drop unmaps the spare if it is still the one kept as gen (any, for gen 0).
func (k *kvSpare) drop(gen uint64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if gen == 0 || k.gen == gen {
		unmap(k.slabs)
		k.slabs, k.written = nil, 0
	}
}

// take gives c the spare mappings when they fit it (same batch size and KV type) and reports
// whether it did; a spare of another shape is unmapped.
func (k *kvSpare) take(c *Cache) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.slabs == nil {
		return false
	}
	slabs, written := k.slabs, k.written
	k.slabs, k.written = nil, 0
	k.gen++ // the pending timer finds nothing of its own
	if k.batch != c.batch || k.half != c.half {
		unmap(slabs)
		return false
	}
	if c.half {
		viewLayers(slabs, c.k16, c.v16)
	} else {
		viewLayers(slabs, c.k, c.v)
	}
	c.mem.mu.Lock()
	c.mem.slabs, c.mem.written = slabs, written
	c.mem.mu.Unlock()
	return true
}

// viewLayers points k[l] and v[l] at slabs 2l and 2l+1, as mapLayers laid them out.
func viewLayers[T float32 | uint16](slabs [][]byte, k, v [][]T) {
	var z T
	size := int(unsafe.Sizeof(z))
	for l := range k {
		kb, vb := slabs[2*l], slabs[2*l+1]
		k[l] = unsafe.Slice((*T)(unsafe.Pointer(&kb[0])), len(kb)/size)
		v[l] = unsafe.Slice((*T)(unsafe.Pointer(&vb[0])), len(vb)/size)
	}
}
