package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
)

// Tokens are bytes: ids 0..255 are the byte values, EOS ends a paragraph of the corpus.
const (
	EOS       = 256
	VocabSize = 257
)

// Config is the model directory's optional config.json.
type Config struct {
	// Order is n: a token is predicted from the n-1 tokens before it (default 4).
	Order int `json:"order"`
	// K is the add-k smoothing constant (default 0.05).
	K float64 `json:"k"`
	// NPositions is the context length reported to the host (default 512). An n-gram model has
	// no real limit; the host's decode loop uses it to bound generation.
	NPositions int `json:"n_positions"`
}

func defaultConfig() Config { return Config{Order: 4, K: 0.05, NPositions: 512} }

// Model is an n-gram language model over bytes with add-k smoothing and backoff:
//
//	P(w | c) = (count(c, w) + k) / (count(c) + k·V)
//
// where c is the longest suffix (at most n-1 tokens) of the context that occurs in the corpus.
// Logits are log P, so softmax(logits) is P exactly.
type Model struct {
	cfg Config
	// counts[len(c)][string(c)] is the distribution after context c.
	counts []map[string]*dist
	bytes  int64 // rough memory footprint, for Stats
}

// dist counts the tokens that followed one context.
type dist struct {
	total uint32
	next  map[int32]uint32
}

// errInvalid marks a model directory whose contents are wrong (as opposed to missing).
var errInvalid = errors.New("ngram: invalid model directory")

// Load reads dir/corpus.txt (required) and dir/config.json (optional). Paragraphs of the corpus
// (separated by blank lines) are independent sequences, each ended by EOS.
func Load(dir string) (*Model, error) {
	path := filepath.Join(dir, "corpus.txt")
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, err // fs.ErrNotExist when there is no corpus: not an n-gram model directory
	}
	cfg := defaultConfig()
	if data, err := os.ReadFile(filepath.Join(dir, "config.json")); err == nil {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&cfg); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", errInvalid, filepath.Join(dir, "config.json"), err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if cfg.Order < 1 || cfg.Order > 16 {
		return nil, fmt.Errorf("%w: config.json: order %d outside [1, 16]", errInvalid, cfg.Order)
	}
	if !(cfg.K > 0) || math.IsInf(cfg.K, 0) {
		return nil, fmt.Errorf("%w: config.json: k %v must be > 0", errInvalid, cfg.K)
	}
	if cfg.NPositions < 1 {
		return nil, fmt.Errorf("%w: config.json: n_positions %d must be ≥ 1", errInvalid, cfg.NPositions)
	}
	m := &Model{cfg: cfg, counts: make([]map[string]*dist, cfg.Order)}
	for i := range m.counts {
		m.counts[i] = map[string]*dist{}
	}
	n := 0
	for _, para := range bytes.Split(bytes.ReplaceAll(text, []byte("\r\n"), []byte("\n")), []byte("\n\n")) {
		para = bytes.TrimSpace(para)
		if len(para) == 0 {
			continue
		}
		seq := make([]int32, 0, len(para)+1)
		for _, b := range para {
			seq = append(seq, int32(b))
		}
		m.train(append(seq, EOS))
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("%w: %s has no text", errInvalid, path)
	}
	return m, nil
}

// train counts every (context, next) pair of seq for context lengths 0..n-1.
func (m *Model) train(seq []int32) {
	for i, w := range seq {
		for l := 0; l < m.cfg.Order && l <= i; l++ {
			key := key(seq[i-l : i])
			d := m.counts[l][key]
			if d == nil {
				d = &dist{next: map[int32]uint32{}}
				m.counts[l][key] = d
				m.bytes += int64(len(key)) + 64
			}
			if d.next[w] == 0 {
				m.bytes += 16
			}
			d.total++
			d.next[w]++
		}
	}
}

func key(ctx []int32) string {
	b := make([]byte, len(ctx)*2)
	for i, t := range ctx {
		b[2*i], b[2*i+1] = byte(t), byte(t>>8)
	}
	return string(b)
}

// Logits writes log P(· | ctx) into dst (len VocabSize). ctx holds at most Order-1 tokens.
func (m *Model) Logits(ctx []int32, dst []float32) {
	var d *dist
	for l := min(len(ctx), m.cfg.Order-1); l >= 0; l-- {
		if d = m.counts[l][key(ctx[len(ctx)-l:])]; d != nil {
			break
		}
	}
	k := m.cfg.K
	denom := math.Log(float64(d.total) + k*VocabSize)
	base := float32(math.Log(k) - denom)
	for i := range dst {
		dst[i] = base
	}
	for w, c := range d.next {
		dst[w] = float32(math.Log(float64(c)+k) - denom)
	}
}

// push appends token t to a context, keeping its last Order-1 tokens.
func (m *Model) push(ctx []int32, t int32) []int32 {
	ctx = append(ctx, t)
	if keep := m.cfg.Order - 1; len(ctx) > keep {
		ctx = append(ctx[:0], ctx[len(ctx)-keep:]...)
	}
	return ctx
}
