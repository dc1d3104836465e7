package generate

import (
	"context"
	"fmt"
	"math"
	"slices"
)

// hashLM is a tiny causal language model whose weights are made by a hash instead of being
// stored. The logit of token v after the attended context c is
//
//	W[last(c)][v] + U[Σc mod K][v] + forceLogit·[v = force[len(c)]] (+ rows[last(c)] instead of W when set)
//
// so the next token depends on the last token (a bigram), on the whole attended context (a
// bag-of-tokens feature, which makes the output change if padding leaks through the mask) and
// on the position (a position bias used to script exact continuations). It keeps its state
// per session like a KV cache does: the attended ids of each row and the mask it was given.
type hashLM struct {
	V, K  int
	force map[int]int       // attended length → token strongly preferred there
	rows  map[int][]float32 // last id → exact logits (V), for hand-computed cases
	calls int
	hook  func(call int) // runs at the start of every Step

	seqs  [][]int64 // attended ids per row
	masks [][]int64 // the full mask so far per row
}

const forceLogit = 100

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

func hashWeight(table, i, v uint64) float32 {
	return float32(splitmix(table<<56^i<<24^v)>>40)/float32(1<<24)*4 - 2
}

// logitsFor writes the logits that follow the attended context seq: (V).
func (m *hashLM) logitsFor(seq []int64, out []float32) {
	last := seq[len(seq)-1]
	var sum int64
	for _, id := range seq {
		sum += id
	}
	if row, ok := m.rows[int(last)]; ok {
		copy(out, row)
	} else {
		for v := range out {
			out[v] = hashWeight(1, uint64(last), uint64(v)) + hashWeight(2, uint64(sum%int64(m.K)), uint64(v))
		}
	}
	if tok, ok := m.force[len(seq)]; ok {
		out[tok] += forceLogit
	}
}

func (m *hashLM) Step(ctx context.Context, ids []int64, B, T int, mask []int64) ([]float32, error) {
	m.calls++
	if m.hook != nil {
		m.hook(m.calls)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if m.seqs == nil {
		m.seqs, m.masks = make([][]int64, B), make([][]int64, B)
	}
	if B != len(m.seqs) || len(ids) != B*T {
		return nil, fmt.Errorf("hashLM: ids %d for B=%d T=%d (session has %d rows)", len(ids), B, T, len(m.seqs))
	}
	P := len(m.masks[0])
	if len(mask) != B*(P+T) {
		return nil, fmt.Errorf("hashLM: mask %d, want B×(P+T) = %d×%d", len(mask), B, P+T)
	}
	out := make([]float32, B*m.V)
	for b := range B {
		row := mask[b*(P+T) : (b+1)*(P+T)]
		if !slices.Equal(row[:P], m.masks[b]) {
			return nil, fmt.Errorf("hashLM: row %d: mask of past positions changed: %v → %v", b, m.masks[b], row[:P])
		}
		m.masks[b] = append(m.masks[b], row[P:]...)
		for t := range T {
			id := ids[b*T+t]
			if id < 0 || id >= int64(m.V) {
				return nil, fmt.Errorf("hashLM: token %d outside vocabulary %d", id, m.V)
			}
			if row[P+t] == 1 {
				m.seqs[b] = append(m.seqs[b], id)
			}
		}
		if len(m.seqs[b]) == 0 {
			return nil, fmt.Errorf("hashLM: row %d attends to nothing", b)
		}
		m.logitsFor(m.seqs[b], out[b*m.V:(b+1)*m.V])
	}
	return out, nil
}

// greedyReference continues one prompt greedily by recomputing the model on the whole
// sequence at every token — no session, no padding, no batch.
func greedyReference(m *hashLM, prompt []int, maxNew int, eos int) []int {
	seq := make([]int64, len(prompt))
	for i, id := range prompt {
		seq[i] = int64(id)
	}
	logits := make([]float32, m.V)
	out := slices.Clone(prompt)
	for range maxNew {
		m.logitsFor(seq, logits)
		best := 0
		for v, l := range logits {
			if l > logits[best] {
				best = v
			}
		}
		out = append(out, best)
		seq = append(seq, int64(best))
		if best == eos {
			break
		}
	}
	return out
}

func logOf(p ...float64) []float32 {
	out := make([]float32, len(p))
	for i, x := range p {
		out[i] = float32(math.Log(x))
	}
	return out
}
