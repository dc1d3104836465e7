package generate

import (
	"cmp"
	"fmt"
	"math"
	"slices"
)

// Sampling selects how the next token is drawn from a row of logits. The steps run in
// Hugging Face's order: repetition penalty → temperature → top-k → top-p → draw.
type Sampling struct {
	// Temperature divides the logits; 0 means greedy (argmax after the repetition penalty).
	Temperature float64
	// TopK keeps the K largest logits (and any tied with the K-th); 0 keeps all.
	TopK int
	// TopP keeps the smallest set of most likely tokens whose probability reaches TopP; it
	// must be in (0, 1], and 1 keeps all.
	TopP float64
	// RepetitionPenalty (> 0, 1 = off) makes tokens already in the row less likely:
	// a positive logit is divided by it, a negative one multiplied.
	RepetitionPenalty float64
	// Seed seeds row r's random stream with Seed+r, so a row's samples do not depend on the
	// other rows of its batch.
	Seed uint64
}

// DefaultSampling is greedy decoding with every filter off.
func DefaultSampling() Sampling { return Sampling{TopP: 1, RepetitionPenalty: 1} }

// Validate reports the first parameter out of range, naming its field.
func (s Sampling) Validate() error {
	switch {
	case !(s.Temperature >= 0) || math.IsInf(s.Temperature, 0):
		return fmt.Errorf("%w: temperature %v: want a finite value ≥ 0 (0 = greedy)", ErrInvalidOptions, s.Temperature)
	case s.TopK < 0:
		return fmt.Errorf("%w: top_k %d: want ≥ 0 (0 = off)", ErrInvalidOptions, s.TopK)
	case !(s.TopP > 0 && s.TopP <= 1):
		return fmt.Errorf("%w: top_p %v: want a value in (0, 1] (1 = off)", ErrInvalidOptions, s.TopP)
	case !(s.RepetitionPenalty > 0) || math.IsInf(s.RepetitionPenalty, 0):
		return fmt.Errorf("%w: repetition_penalty %v: want a finite value > 0 (1 = off)", ErrInvalidOptions, s.RepetitionPenalty)
	}
	return nil
}

// Greedy returns the index of the largest logit, the first one on ties (as torch.argmax).
// logits: (V)
func Greedy(logits []float32) int {
	best := 0
	for i, l := range logits {
		if l > logits[best] {
			best = i
		}
	}
	return best
}

// ApplyAllowed sets, in place, the logit of every id outside the ranges to -Inf; the ranges
// are sorted and disjoint (Options.Allowed). No ranges changes nothing.
func ApplyAllowed(logits []float32, ranges []IDRange) {
	if len(ranges) == 0 {
		return
	}
	negInf := float32(math.Inf(-1))
	next := 0
	for _, r := range ranges {
		for i := next; i < min(r.Lo, len(logits)); i++ {
			logits[i] = negInf
		}
		next = max(next, r.Hi)
	}
	for i := next; i < len(logits); i++ {
		logits[i] = negInf
	}
}

// Guide writes the classifier-free guidance mix l_u + scale·(l_c − l_u) of a conditional and an
// unconditional logits row into dst (grown if short) and returns it. (V)
func Guide(dst, cond, uncond []float32, scale float32) []float32 {
	dst = slices.Grow(dst[:0], len(cond))[:len(cond)]
	for i, c := range cond {
		u := uncond[i]
		dst[i] = u + scale*(c-u)
	}
	return dst
}

// ApplyRepetitionPenalty rescales, in place, the logits of the tokens in seen (each id once):
// l ← l/penalty if l > 0, l·penalty otherwise — Hugging Face's RepetitionPenaltyLogitsProcessor.
// logits: (V); ids in seen must be < V.
func ApplyRepetitionPenalty(logits []float32, seen []int, penalty float32) {
	for _, id := range seen {
		if l := logits[id]; l > 0 {
			logits[id] = l / penalty
		} else {
			logits[id] = l * penalty
		}
	}
}

// ApplyTemperature divides the logits by t > 0 in place: softmax(l/t).
func ApplyTemperature(logits []float32, t float32) {
	for i := range logits {
		logits[i] /= t
	}
}

// ApplyTopK sets every logit below the k-th largest to -Inf, keeping ties with the k-th as
// Hugging Face's TopKLogitsWarper does. heap is scratch space of capacity ≥ k (grown if not);
// the possibly grown slice is returned for reuse. k ≥ len(logits) or k ≤ 0 changes nothing.
func ApplyTopK(logits []float32, k int, heap []float32) []float32 {
	if k <= 0 || k >= len(logits) {
		return heap
	}
	// A min-heap of the k largest values seen: O(V log k), and NaN never enters it.
	h := heap[:0]
	for _, l := range logits {
		if len(h) < k {
			h = append(h, l)
			for i := len(h) - 1; i > 0 && h[i] < h[(i-1)/2]; i = (i - 1) / 2 {
				h[i], h[(i-1)/2] = h[(i-1)/2], h[i]
			}
			continue
		}
		if l > h[0] {
			h[0] = l
			siftDown(h)
		}
	}
	kth := h[0]
	for i, l := range logits {
		if !(l >= kth) {
			logits[i] = float32(math.Inf(-1))
		}
	}
	return h
}

func siftDown(h []float32) {
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(h) && h[l] < h[m] {
			m = l
		}
		if r < len(h) && h[r] < h[m] {
			m = r
		}
		if m == i {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

// ApplyTopP keeps the most likely tokens, in order of decreasing probability, while the
// probability mass before each one is below p, and sets the rest to -Inf. This is Hugging
// Face's TopPLogitsWarper (drop tokens whose ascending cumulative probability is ≤ 1−p) and
// always keeps the most likely token. idx is scratch space (grown if short) and is returned.
// p ≥ 1 changes nothing.
//
// Sorting all V logits costs milliseconds per token at V = 50257, so only the tokens within
// a logit distance d of the maximum are sorted, d doubling until they hold more than p of the
// mass: every token outside is dropped anyway, since the mass before it is already ≥ p.
func ApplyTopP(logits []float32, p float64, idx []int32) []int32 {
	if p >= 1 {
		return idx
	}
	negInf := float32(math.Inf(-1))
	maxL := negInf
	for _, l := range logits {
		if l > maxL {
			maxL = l
		}
	}
	if maxL == negInf || math.IsInf(float64(maxL), 1) {
		return idx // nothing finite, or a certain token: nothing to trim by mass
	}
	var total float64
	for _, l := range logits {
		if l > negInf {
			total += math.Exp(float64(l - maxL))
		}
	}
	// topPMargin keeps rounding in the two summation orders from dropping a token the
	// sorted walk below would keep.
	const topPMargin = 1e-9
	thr := negInf
	for d := float32(2); d < 1e4; d *= 2 {
		t := maxL - d
		var mass float64
		for _, l := range logits {
			if l >= t {
				mass += math.Exp(float64(l - maxL))
			}
		}
		if mass/total >= p+topPMargin {
			thr = t
			break
		}
	}
	idx = idx[:0]
	for i, l := range logits {
		if l >= thr && l > negInf {
			idx = append(idx, int32(i))
		} else {
			logits[i] = negInf
		}
	}
	slices.SortFunc(idx, func(a, b int32) int {
		if c := cmp.Compare(logits[b], logits[a]); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	var before float64
	for n, i := range idx {
		if before >= p {
			for _, j := range idx[n:] {
				logits[j] = negInf
			}
			break
		}
		before += math.Exp(float64(logits[i]-maxL)) / total
	}
	return idx
}

// Sample draws an index from softmax(logits) by inverting the cumulative distribution at
// u ∈ [0, 1): the first index whose cumulative probability exceeds u. -Inf logits are never
// drawn. logits: (V)
func Sample(logits []float32, u float64) int {
	maxL := float32(math.Inf(-1))
	for _, l := range logits {
		maxL = max(maxL, l)
	}
	if math.IsInf(float64(maxL), -1) || maxL != maxL {
		return Greedy(logits)
	}
	var total float64
	for _, l := range logits {
		if !math.IsInf(float64(l), -1) {
			total += math.Exp(float64(l - maxL))
		}
	}
	target := u * total
	last := 0
	var acc float64
	for i, l := range logits {
		if math.IsInf(float64(l), -1) {
			continue // filtered out; skipping the exp matters after top-k
		}
		e := math.Exp(float64(l - maxL))
		if e == 0 {
			continue
		}
		acc += e
		last = i
		if acc > target {
			return i
		}
	}
	return last // rounding left target at the very top
}
