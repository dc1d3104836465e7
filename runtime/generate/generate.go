// Package generate is the host-side decode loop of a causal language model: it feeds a batch
// of prompts to a backend session in one prefill step, then one step per new token, and draws
// each token with the samplers of this package, so that every backend is sampled by the same
// code. It stops rows on end-of-sequence ids, a token budget, the context length or stop
// strings, and streams the new text as it becomes final.
//
// The package knows nothing of plugins or tokenizers: a backend session is a Stepper, text
// comes from a Decoder (runtime/tokenizer's Tokenizer satisfies it).
package generate

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// Stepper is one open backend session of a causal LM.
type Stepper interface {
	// Step feeds ids (B,T) (row-major) and the full attention mask (B, P+T), 1 = attend,
	// where P is the number of positions already fed in this session, and returns the
	// logits of the last position of each row: (B, V).
	//
	// Generate reuses ids and mask across calls, so Step must not keep them; it reads the
	// returned logits before the next call, so Step may reuse that buffer.
	Step(ctx context.Context, ids []int64, B, T int, mask []int64) ([]float32, error)
}

// Decoder turns token ids into text.
type Decoder interface {
	Decode(ids []int) string
}

// StreamDecoder turns ids into text one at a time: Add returns the text that became final
// (never half a UTF-8 character), Flush what is left. runtime/tokenizer's StreamDecoder is one.
type StreamDecoder interface {
	Add(id int) string
	Flush() string
}

// Finish reasons of a row.
const (
	FinishEOS    = "eos"    // the row drew one of Options.EOS
	FinishStop   = "stop"   // the row's text reached a stop string
	FinishLength = "length" // MaxNewTokens, or the context length, was reached
)

// Errors; they are wrapped with details.
var (
	ErrInvalidOptions = errors.New("generate: invalid options")
	ErrContextLength  = errors.New("generate: prompt does not fit the context")
)

// Options control Generate. MaxNewTokens and Sampling.TopP/RepetitionPenalty have no usable
// zero value; start from DefaultSampling.
type Options struct {
	// MaxNewTokens bounds the tokens drawn per row (> 0; 0 only with PromptLogprobs, which
	// scores the prompts and draws nothing: every row finishes with FinishLength).
	MaxNewTokens int
	// MaxContext is the model's context length (n_positions); 0 = unbounded. Prompts (after
	// left padding to the longest) that leave no room for one new token are refused before
	// any step; rows that reach it finish with FinishLength.
	MaxContext int
	// EOS ids end a row (FinishEOS). EOS[0] also pads shorter prompts and feeds finished rows.
	EOS []int
	// StopStrings end a row when its new text contains one; the text is cut before it.
	// Needs Decoder.
	StopStrings []string
	Sampling    Sampling
	// Decoder turns new ids into Row.Text; needed by StopStrings and OnText.
	Decoder Decoder
	// NewStreamDecoder, when set, gives each row an incremental decoder (the tokenizer's);
	// otherwise Decoder is re-run on the row's new ids at each token.
	NewStreamDecoder func() StreamDecoder
	// OnText receives each row's new text as it becomes final: never half a UTF-8 character,
	// never text that may turn out to be part of a stop string. The deltas of a row
	// concatenate to its Row.Text. It is called from Generate's goroutine.
	OnText func(row int, delta string)
	// Allowed, when not empty, restricts every draw to these id ranges: the logits of every
	// other id are set to -Inf before the samplers run (greedy included). The ranges must be
	// sorted and disjoint, and end within the vocabulary.
	Allowed []IDRange
	// Guidance, when set, turns on classifier-free guidance (see Guidance).
	Guidance *Guidance
	// OnLogprobs, when set, receives the log-softmax of each row's raw logits for every token
	// drawn (under guidance: of the conditional row's own logits, before mixing).
	OnLogprobs TokenLogprobs
	// PromptLogprobs feeds the prompts one position per step instead of in one prefill step,
	// so that OnLogprobs also receives every prompt token after the first (whose logprob the
	// model does not give). Not with Guidance.
	PromptLogprobs bool
}

// IDRange is the half-open range of token ids [Lo, Hi).
type IDRange struct{ Lo, Hi int }

// Guidance is classifier-free guidance: each prompt r runs beside an unconditional prompt in
// the same session (rows B+r of one batch of 2B), both are fed the token drawn for row r, and
// row r draws from l_u + Scale·(l_c − l_u), l_c its own logits and l_u its unconditional row's,
// mixed on the host before Options.Allowed and the samplers. Scale 1 is the conditional model
// alone: no unconditional rows are run, and the result equals Generate without Guidance.
type Guidance struct {
	// Scale s ≥ 0: 0 samples the unconditional model, 1 the conditional one, > 1 pushes away
	// from the unconditional model.
	Scale float64
	// Unconditional holds one prompt per row, or one prompt for every row.
	Unconditional [][]int
}

// Row is the outcome for one prompt.
type Row struct {
	IDs             []int  // prompt then new tokens (including the EOS that ended the row)
	Text            string // the new tokens' text, cut before a stop string, without EOS
	FinishReason    string // FinishEOS, FinishStop or FinishLength
	PromptTokens    int
	GeneratedTokens int
}

// Result is the outcome of a batch.
type Result struct {
	Rows []Row
	// PrefillMS is the wall time of the prefill step.
	PrefillMS float64
	// DecodeTokensPerS is the tokens drawn after the first one, summed over rows, divided by
	// the wall time of the decode steps; 0 when no decode step ran.
	DecodeTokensPerS float64
}

// Generate continues each prompt with the model behind s. Prompts are left-padded to the
// longest with EOS[0] (mask 0) and fed in one Step; then every step feeds each row's last
// token, finished rows included (their output is ignored), until all rows have finished.
func Generate(ctx context.Context, s Stepper, prompts [][]int, opts Options) (*Result, error) {
	if err := validate(prompts, opts); err != nil {
		return nil, err
	}
	B := len(prompts)
	// all is the batch the session runs: the prompts, then their unconditional rows when guided.
	all := prompts
	guided := opts.Guidance != nil && opts.Guidance.Scale != 1
	if guided {
		all = slices.Clip(prompts)
		for r := range B {
			all = append(all, opts.Guidance.Unconditional[min(r, len(opts.Guidance.Unconditional)-1)])
		}
	}
	BB := len(all)
	T := 0
	for _, p := range all {
		T = max(T, len(p))
	}
	if opts.MaxContext > 0 && (T > opts.MaxContext || T == opts.MaxContext && opts.MaxNewTokens > 0) {
		return nil, fmt.Errorf("%w: %d prompt positions leave no room for a new token in a context of %d",
			ErrContextLength, T, opts.MaxContext)
	}
	pad := 0
	if len(opts.EOS) > 0 {
		pad = opts.EOS[0]
	}

	rows := make([]*rowState, BB)
	ids := make([]int64, BB*T)
	// Buffers grow with the rows; MaxNewTokens is an upper bound, often far above what a row
	// uses, so it only caps the initial capacity.
	maskBuf := make([]int64, 0, BB*(T+min(opts.MaxNewTokens, preallocTokens)))
	for b, p := range all {
		r := newRowState(b, p, T-len(p), &opts)
		rows[b] = r
		for j := range T {
			ids[b*T+j] = int64(pad)
			if j >= r.pad {
				ids[b*T+j] = int64(p[j-r.pad])
			}
		}
	}

	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("generate: before prefill: %w", err)
	}
	start := time.Now()
	var logits []float32
	var err error
	if opts.PromptLogprobs {
		logits, err = scorePrompts(ctx, s, ids, rows, T, maskBuf)
	} else {
		maskBuf = fillMask(maskBuf, rows, T)
		logits, err = s.Step(ctx, ids, BB, T, maskBuf)
	}
	if err != nil {
		return nil, fmt.Errorf("generate: prefill: %w", err)
	}
	prefill := time.Since(start)
	if len(logits) == 0 || len(logits)%BB != 0 {
		return nil, fmt.Errorf("generate: prefill returned %d logits for %d rows", len(logits), BB)
	}
	V := len(logits) / BB
	for _, p := range all {
		if i := slices.IndexFunc(p, func(id int) bool { return id >= V }); i >= 0 {
			return nil, fmt.Errorf("%w: prompt token %d is outside the model's vocabulary of %d", ErrInvalidOptions, p[i], V)
		}
	}
	if n := len(opts.Allowed); n > 0 && opts.Allowed[n-1].Hi > V {
		return nil, fmt.Errorf("%w: allowed ids %v end beyond the model's vocabulary of %d", ErrInvalidOptions, opts.Allowed[n-1], V)
	}

	if opts.MaxNewTokens == 0 {
		for _, r := range rows {
			r.finish(FinishLength)
		}
	}
	decodeStart := time.Now()
	step := make([]int64, BB)
	var mixed []float32
	for n := T; ; n++ {
		active := 0
		for b, r := range rows[:B] {
			if !r.done {
				l := logits[b*V : (b+1)*V]
				raw := l
				if guided {
					mixed = Guide(mixed, l, logits[(B+b)*V:(B+b+1)*V], float32(opts.Guidance.Scale))
					l = mixed
				}
				r.next(l, raw, opts.MaxContext > 0 && n+1 >= opts.MaxContext)
			}
			step[b] = int64(pad)
			if !r.done {
				step[b] = int64(r.ids[len(r.ids)-1])
				active++
			}
		}
		for b := B; b < BB; b++ {
			step[b] = step[b-B] // an unconditional row is fed its conditional row's token
		}
		if active == 0 {
			break
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("generate: after %d positions: %w", n, err)
		}
		maskBuf = fillMask(maskBuf, rows, n+1)
		logits, err = s.Step(ctx, step, BB, 1, maskBuf)
		if err != nil {
			return nil, fmt.Errorf("generate: decode step at position %d: %w", n, err)
		}
		if len(logits) != BB*V {
			return nil, fmt.Errorf("generate: decode step at position %d returned %d logits, want %d×%d", n, len(logits), BB, V)
		}
	}
	decode := time.Since(decodeStart)

	res := &Result{Rows: make([]Row, B), PrefillMS: float64(prefill.Microseconds()) / 1e3}
	decoded := 0
	for b, r := range rows[:B] {
		if len(r.ids) == r.prompt {
			decoded++ // a scored row drew nothing
		}
		res.Rows[b] = Row{
			IDs:             r.ids,
			Text:            string(r.text),
			FinishReason:    r.reason,
			PromptTokens:    len(prompts[b]),
			GeneratedTokens: len(r.ids) - len(prompts[b]),
		}
		decoded += res.Rows[b].GeneratedTokens - 1
	}
	if decoded > 0 && decode > 0 {
		res.DecodeTokensPerS = float64(decoded) / decode.Seconds()
	}
	return res, nil
}

func validate(prompts [][]int, opts Options) error {
	if len(prompts) == 0 {
		return fmt.Errorf("%w: no prompts", ErrInvalidOptions)
	}
	for i, p := range prompts {
		if len(p) == 0 {
			return fmt.Errorf("%w: prompt %d is empty: a causal LM needs at least one token to condition on", ErrInvalidOptions, i)
		}
		if j := slices.IndexFunc(p, func(id int) bool { return id < 0 }); j >= 0 {
			return fmt.Errorf("%w: prompt %d has negative token id %d at %d", ErrInvalidOptions, i, p[j], j)
		}
	}
	if opts.MaxNewTokens < 0 || opts.MaxNewTokens == 0 && !opts.PromptLogprobs {
		return fmt.Errorf("%w: max_new_tokens %d: want > 0 (0 only to score the prompts, with PromptLogprobs)", ErrInvalidOptions, opts.MaxNewTokens)
	}
	if opts.PromptLogprobs && opts.Guidance != nil {
		return fmt.Errorf("%w: prompt logprobs with guidance: the unconditional rows have no prompt to score", ErrInvalidOptions)
	}
	if opts.MaxContext < 0 {
		return fmt.Errorf("%w: max_context %d: want ≥ 0 (0 = unbounded)", ErrInvalidOptions, opts.MaxContext)
	}
	if slices.ContainsFunc(opts.EOS, func(id int) bool { return id < 0 }) {
		return fmt.Errorf("%w: eos %v: ids must be ≥ 0", ErrInvalidOptions, opts.EOS)
	}
	if slices.Contains(opts.StopStrings, "") {
		return fmt.Errorf("%w: stop string \"\" would stop before the first token", ErrInvalidOptions)
	}
	if opts.Decoder == nil && (len(opts.StopStrings) > 0 || opts.OnText != nil) {
		return fmt.Errorf("%w: stop strings and OnText need a Decoder", ErrInvalidOptions)
	}
	for i, r := range opts.Allowed {
		if r.Lo < 0 || r.Hi <= r.Lo || (i > 0 && r.Lo < opts.Allowed[i-1].Hi) {
			return fmt.Errorf("%w: allowed ids %v: want sorted, disjoint, non-empty ranges [lo, hi) of ids ≥ 0", ErrInvalidOptions, opts.Allowed)
		}
	}
	if g := opts.Guidance; g != nil {
		if !(g.Scale >= 0) || math.IsInf(g.Scale, 0) {
			return fmt.Errorf("%w: guidance scale %v: want a finite value ≥ 0 (1 = off)", ErrInvalidOptions, g.Scale)
		}
		if n := len(g.Unconditional); n != 1 && n != len(prompts) {
			return fmt.Errorf("%w: guidance has %d unconditional prompts for %d rows: want 1 or %d", ErrInvalidOptions, n, len(prompts), len(prompts))
		}
		for i, p := range g.Unconditional {
			if len(p) == 0 || slices.ContainsFunc(p, func(id int) bool { return id < 0 }) {
				return fmt.Errorf("%w: unconditional prompt %d is empty or has a negative id", ErrInvalidOptions, i)
			}
		}
	}
	return opts.Sampling.Validate()
}

// fillMask writes the (B, L) mask of a session holding L positions into buf (grown if short):
// 0 over each row's left padding, 1 after it. Finished rows keep attending to what they are fed.
func fillMask(buf []int64, rows []*rowState, L int) []int64 {
	m := slices.Grow(buf[:0], len(rows)*L)[:len(rows)*L]
	for b, r := range rows {
		row := m[b*L : (b+1)*L]
		for j := range row {
			row[j] = 0
			if j >= r.pad {
				row[j] = 1
			}
		}
	}
	return m
}

// rowState is one row's sampling state, scratch buffers and text.
type rowState struct {
	index  int
	opts   *Options
	pad    int
	ids    []int
	prompt int
	done   bool
	reason string

	rng     *rand.Rand
	seen    []bool // (V) tokens present in the row, for the repetition penalty
	seenIDs []int
	logits  []float32
	lp      []float64 // log-softmax scratch for OnLogprobs
	heap    []float32
	idx     []int32

	stream  StreamDecoder
	text    []byte
	emitted int // bytes of text already passed to OnText
	maxStop int
}

// preallocTokens caps the new tokens that buffers are sized for up front.
const preallocTokens = 1024

// pcgStream is the second PCG word; rows differ by seed, not by stream, so that a row's samples
// equal those of the same prompt run alone with seed Seed+row.
const pcgStream = 0x6d6f64656c7274 // "modelrt"

func newRowState(index int, prompt []int, pad int, opts *Options) *rowState {
	r := &rowState{
		index:  index,
		opts:   opts,
		pad:    pad,
		ids:    append(make([]int, 0, len(prompt)+min(opts.MaxNewTokens, preallocTokens)), prompt...),
		prompt: len(prompt),
		rng:    rand.New(rand.NewPCG(opts.Sampling.Seed+uint64(index), pcgStream)),
	}
	for _, s := range opts.StopStrings {
		r.maxStop = max(r.maxStop, len(s))
	}
	if opts.Decoder != nil {
		if opts.NewStreamDecoder != nil {
			r.stream = opts.NewStreamDecoder()
		} else {
			r.stream = &redecoder{dec: opts.Decoder}
		}
	}
	return r
}

// next draws the row's next token from logits (V) and decides whether the row ends;
// atLimit says the context has no room for another token.
func (r *rowState) next(logits, raw []float32, atLimit bool) {
	tok := r.pick(logits)
	r.logprobsHook(raw, len(r.ids), tok)
	r.ids = append(r.ids, tok)
	if slices.Contains(r.opts.EOS, tok) {
		r.finish(FinishEOS)
		return
	}
	delta := ""
	if r.stream != nil {
		delta = r.stream.Add(tok)
	}
	if !r.addText(delta) {
		return // a stop string ended the row
	}
	if len(r.ids)-r.prompt >= r.opts.MaxNewTokens || atLimit {
		r.finish(FinishLength)
	}
}

// pick applies the samplers in Hugging Face's order to a copy of logits.
func (r *rowState) pick(logits []float32) int {
	sp := r.opts.Sampling
	if sp.RepetitionPenalty != 1 {
		if r.seen == nil {
			r.seen = make([]bool, len(logits))
			for _, id := range r.ids {
				r.markSeen(id)
			}
		} else {
			r.markSeen(r.ids[len(r.ids)-1])
		}
	}
	if sp.Temperature == 0 && sp.RepetitionPenalty == 1 && len(r.opts.Allowed) == 0 {
		return Greedy(logits)
	}
	r.logits = append(r.logits[:0], logits...)
	l := r.logits
	ApplyAllowed(l, r.opts.Allowed)
	if sp.RepetitionPenalty != 1 {
		ApplyRepetitionPenalty(l, r.seenIDs, float32(sp.RepetitionPenalty))
	}
	if sp.Temperature == 0 {
		return Greedy(l)
	}
	ApplyTemperature(l, float32(sp.Temperature))
	r.heap = ApplyTopK(l, sp.TopK, r.heap)
	r.idx = ApplyTopP(l, sp.TopP, r.idx)
	return Sample(l, r.rng.Float64())
}

func (r *rowState) markSeen(id int) {
	if id < len(r.seen) && !r.seen[id] {
		r.seen[id] = true
		r.seenIDs = append(r.seenIDs, id)
	}
}

// finish ends the row: the stream decoder's remainder joins the text (a stop string may still
// complete in it) and everything not yet streamed is emitted.
func (r *rowState) finish(reason string) {
	r.done = true
	r.reason = reason
	if r.stream != nil {
		if !r.addText(r.stream.Flush()) {
			return
		}
	}
	r.emit(len(r.text))
}

// addText appends newly final text, cuts it at a stop string (ending the row, false) and
// streams what can no longer be part of one.
func (r *rowState) addText(delta string) bool {
	if delta == "" && r.emitted == len(r.text) {
		return true
	}
	old := len(r.text)
	r.text = append(r.text, delta...)
	if r.maxStop > 0 {
		from := max(0, old-r.maxStop+1)
		cut := -1
		for _, s := range r.opts.StopStrings {
			if i := strings.Index(string(r.text[from:]), s); i >= 0 && (cut < 0 || from+i < cut) {
				cut = from + i
			}
		}
		if cut >= 0 {
			r.text = r.text[:cut]
			r.done = true
			r.reason = FinishStop
			r.emit(cut)
			return false
		}
	}
	r.emit(len(r.text) - r.heldBack())
	return true
}

// heldBack is the length of the longest suffix of the unstreamed text that begins a stop
// string: it may yet become a stop string, which would cut it from the text.
func (r *rowState) heldBack() int {
	tail := r.text[r.emitted:]
	held := 0
	for _, s := range r.opts.StopStrings {
		for l := min(len(s)-1, len(tail)); l > held; l-- {
			if string(tail[len(tail)-l:]) == s[:l] {
				held = l
				break
			}
		}
	}
	return held
}

func (r *rowState) emit(upto int) {
	if upto <= r.emitted {
		return
	}
	if r.opts.OnText != nil {
		r.opts.OnText(r.index, string(r.text[r.emitted:upto]))
	}
	r.emitted = upto
}

// redecoder is the StreamDecoder used when only a Decoder is given: it decodes all of the
// row's ids again at each token and releases the text up to a trailing U+FFFD, the only part
// of a decode that later bytes can still change (an unfinished character). Quadratic in the
// row's length, which is fine for the hundreds of tokens a row holds.
type redecoder struct {
	dec  Decoder
	ids  []int
	sent int
}

func (d *redecoder) Add(id int) string {
	d.ids = append(d.ids, id)
	full := d.dec.Decode(d.ids)
	stable := strings.TrimSuffix(full, "\uFFFD")
	if len(stable) <= d.sent {
		return ""
	}
	delta := stable[d.sent:]
	d.sent = len(stable)
	return delta
}

func (d *redecoder) Flush() string {
	full := d.dec.Decode(d.ids)
	delta := ""
	if len(full) > d.sent {
		delta = full[d.sent:]
	}
	d.ids, d.sent = d.ids[:0], 0
	return delta
}
