package tokenizer

import "sync"

// merge is the outcome of joining a pair of adjacent symbols: its priority (the line number in
// merges.txt, lower first) and the id of the joined token.
type merge struct {
	rank int32
	id   int32
}

func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// bpeNaive is GPT-2's bpe() from encoder.py, on token ids: repeatedly take the adjacent pair
// with the lowest rank and join every occurrence of it, left to right, until no pair has a
// rank. It is the reference for bpeHeap and the fallback for merge lists whose ranks are not
// in training order (see Tokenizer.naive). word is modified and returned.
func bpeNaive(word []int32, merges map[uint64]merge) []int32 {
	for len(word) > 1 {
		best := merge{rank: -1}
		var bestA, bestB int32
		for i := 0; i+1 < len(word); i++ {
			if m, ok := merges[pairKey(word[i], word[i+1])]; ok && (best.rank < 0 || m.rank < best.rank) {
				best, bestA, bestB = m, word[i], word[i+1]
			}
		}
		if best.rank < 0 {
			break
		}
		out := word[:0]
		for i := 0; i < len(word); {
			if i+1 < len(word) && word[i] == bestA && word[i+1] == bestB {
				out = append(out, best.id)
				i += 2
				continue
			}
			out = append(out, word[i])
			i++
		}
		word = out
	}
	return word
}

// bpeWork is the scratch space of bpeHeap, pooled so that encoding allocates only its output.
type bpeWork struct {
	id   []int32
	next []int32 // index of the next live symbol, -1 at the end
	prev []int32 // index of the previous live symbol, -1 at the start
	heap []candidate
}

// candidate is a mergeable pair: the left symbol's index, both ids when queued (to detect
// stale entries after neighbours merged) and the merge's rank.
type candidate struct {
	rank        int32
	pos         int32
	left, right int32
}

func (c candidate) less(d candidate) bool {
	return c.rank < d.rank || (c.rank == d.rank && c.pos < d.pos)
}

var bpeWorkPool = sync.Pool{New: func() any { return new(bpeWork) }}

// bpeHeap gives the same result as bpeNaive in O(n log n) when every merge that consumes a
// token ranks after every merge that produces it (true of trained merge lists, GPT-2's
// included): then a pair created by a merge never outranks pairs already queued, so popping
// (rank, position) in order reproduces "lowest rank first, all occurrences left to right".
// The naive loop is quadratic in the piece length, which lets a long run of one character
// stall a server.
func bpeHeap(word []int32, merges map[uint64]merge) []int32 {
	n := len(word)
	if n < 2 {
		return word
	}
	w := bpeWorkPool.Get().(*bpeWork)
	defer bpeWorkPool.Put(w)
	w.id = append(w.id[:0], word...)
	w.next = grow(w.next, n)
	w.prev = grow(w.prev, n)
	w.heap = w.heap[:0]
	for i := range n {
		w.next[i] = int32(i + 1)
		w.prev[i] = int32(i - 1)
	}
	w.next[n-1] = -1
	for i := 0; i+1 < n; i++ {
		w.push(int32(i), int32(i+1), merges)
	}
	for len(w.heap) > 0 {
		c := w.pop()
		r := w.next[c.pos]
		if r < 0 || w.id[c.pos] != c.left || w.id[r] != c.right {
			continue // a neighbour merged since this pair was queued
		}
		w.id[c.pos] = merges[pairKey(c.left, c.right)].id
		w.id[r] = -1
		nr := w.next[r]
		w.next[c.pos] = nr
		if nr >= 0 {
			w.prev[nr] = c.pos
			w.push(c.pos, nr, merges)
		}
		if p := w.prev[c.pos]; p >= 0 {
			w.push(p, c.pos, merges)
		}
	}
	out := word[:0]
	for i := int32(0); i >= 0; i = w.next[i] {
		out = append(out, w.id[i])
	}
	return out
}

func grow(s []int32, n int) []int32 {
	if cap(s) < n {
		return make([]int32, n)
	}
	return s[:n]
}

func (w *bpeWork) push(l, r int32, merges map[uint64]merge) {
	m, ok := merges[pairKey(w.id[l], w.id[r])]
	if !ok {
		return
	}
	w.heap = append(w.heap, candidate{rank: m.rank, pos: l, left: w.id[l], right: w.id[r]})
	h := w.heap
	for i := len(h) - 1; i > 0; {
		p := (i - 1) / 2
		if !h[i].less(h[p]) {
			break
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
}

func (w *bpeWork) pop() candidate {
	h := w.heap
	top := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h = h[:last]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(h) && h[l].less(h[m]) {
			m = l
		}
		if r < len(h) && h[r].less(h[m]) {
			m = r
		}
		if m == i {
			break
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
	w.heap = h
	return top
}

// pieceCache remembers the BPE of recent pieces. It holds two generations of at most limit
// entries each: when the young one fills up it becomes the old one and the previous old one
// is dropped, so memory stays bounded while frequent pieces survive (they get copied forward
// on a hit). Safe for concurrent use.
type pieceCache struct {
	mu         sync.Mutex
	limit      int
	young, old map[string][]int32
}

const (
	cacheEntries  = 8192 // per generation
	cacheMaxPiece = 64   // bytes; longer pieces are rare and would bloat the cache
)

func newPieceCache(limit int) *pieceCache {
	return &pieceCache{limit: limit, young: make(map[string][]int32)}
}

func (c *pieceCache) get(piece string) ([]int32, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ids, ok := c.young[piece]; ok {
		return ids, true
	}
	if ids, ok := c.old[piece]; ok {
		c.putLocked(piece, ids)
		return ids, true
	}
	return nil, false
}

func (c *pieceCache) put(piece string, ids []int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.putLocked(piece, ids)
}

func (c *pieceCache) putLocked(piece string, ids []int32) {
	if len(c.young) >= c.limit {
		c.old, c.young = c.young, make(map[string][]int32, c.limit)
	}
	c.young[piece] = ids
}
