// Package tokenizer implements GPT-2's byte-level BPE: text is split into pieces by GPT-2's
// pre-tokenization rule, each piece's UTF-8 bytes are spelled with the byte↔unicode table, and
// the merges of the vocabulary join adjacent symbols in rank order. Decoding maps ids back to
// bytes and repairs invalid UTF-8 the way Python's bytes.decode(errors="replace") does, and a
// StreamDecoder emits text token by token without splitting a character.
//
// A Tokenizer is immutable after construction and safe for concurrent use.
package tokenizer

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"
)

// EndOfText is GPT-2's end-of-text token, id 50256 in its vocabulary.
const EndOfText = "<|endoftext|>"

// Errors returned by New and Load; they are wrapped with the offending file, line or token.
var (
	ErrNoTokenizer = errors.New("tokenizer: no tokenizer files")
	ErrInvalid     = errors.New("tokenizer: invalid vocabulary")
)

// maxID bounds token ids so that a corrupt vocabulary cannot demand a giant id table.
const maxID = 1 << 24

// Tokenizer is a byte-level BPE tokenizer.
type Tokenizer struct {
	vocab      map[string]int // vocabulary spelling → id
	tokens     []string       // id → vocabulary spelling; "" for unused ids
	tokenBytes [][]byte       // id → the bytes the token stands for
	byteID     [256]int32     // id of each single byte
	merges     map[uint64]merge

	specials []string // matched in text by Encode, longest first
	eos      int

	// naive selects bpeNaive because the merge list is not in training order.
	naive bool
	// addPrefixSpace prepends a space to each text segment (tokenizer.json's ByteLevel option).
	addPrefixSpace bool

	cache *pieceCache
}

// New builds a tokenizer from a vocabulary (byte-level spellings, e.g. "Ġthe" for " the"), its
// merges in rank order, and the special tokens that Encode recognises in text (each must be in
// vocab). Every single byte must have a token, and every merge's parts and result must be in
// vocab, as Hugging Face's BPE also requires.
func New(vocab map[string]int, merges [][2]string, special ...string) (*Tokenizer, error) {
	t := &Tokenizer{
		vocab:  make(map[string]int, len(vocab)),
		merges: make(map[uint64]merge, len(merges)),
		eos:    -1,
		cache:  newPieceCache(cacheEntries),
	}
	n := 0
	for tok, id := range vocab {
		if id < 0 || id >= maxID {
			return nil, fmt.Errorf("%w: token %q has id %d outside [0, %d)", ErrInvalid, tok, id, maxID)
		}
		n = max(n, id+1)
		t.vocab[tok] = id
	}
	t.tokens = make([]string, n)
	t.tokenBytes = make([][]byte, n)
	seen := make([]bool, n)
	for tok, id := range vocab {
		if seen[id] {
			return nil, fmt.Errorf("%w: id %d is used by %q and %q", ErrInvalid, id, t.tokens[id], tok)
		}
		seen[id] = true
		t.tokens[id] = tok
		if b, ok := rawBytes(tok); ok {
			t.tokenBytes[id] = b
		} else {
			t.tokenBytes[id] = []byte(tok)
		}
	}
	for b := range 256 {
		id, ok := vocab[string(byteRunes[b])]
		if !ok {
			return nil, fmt.Errorf("%w: no token for byte 0x%02x (%q)", ErrInvalid, b, byteRunes[b])
		}
		t.byteID[b] = int32(id)
	}
	// producedAt[id] is the highest rank that produces id; a merge consuming id at a lower
	// rank means the list is not in training order and bpeHeap could differ from bpeNaive.
	producedAt := make(map[int32]int32, len(merges))
	for rank, m := range merges {
		a, okA := vocab[m[0]]
		b, okB := vocab[m[1]]
		ab, okAB := vocab[m[0]+m[1]]
		switch {
		case !okA:
			return nil, fmt.Errorf("%w: merge %d (%q %q): %q not in vocabulary", ErrInvalid, rank+1, m[0], m[1], m[0])
		case !okB:
			return nil, fmt.Errorf("%w: merge %d (%q %q): %q not in vocabulary", ErrInvalid, rank+1, m[0], m[1], m[1])
		case !okAB:
			return nil, fmt.Errorf("%w: merge %d (%q %q): %q not in vocabulary", ErrInvalid, rank+1, m[0], m[1], m[0]+m[1])
		}
		key := pairKey(int32(a), int32(b))
		if _, dup := t.merges[key]; dup {
			continue // the first occurrence has the lower rank and wins, as in GPT-2's dict
		}
		t.merges[key] = merge{rank: int32(rank), id: int32(ab)}
		producedAt[int32(ab)] = int32(rank)
	}
	for key, m := range t.merges {
		a, b := int32(key>>32), int32(uint32(key))
		if p, ok := producedAt[a]; ok && p > m.rank {
			t.naive = true
		}
		if p, ok := producedAt[b]; ok && p > m.rank {
			t.naive = true
		}
	}
	for _, s := range special {
		if s == "" {
			return nil, fmt.Errorf("%w: empty special token", ErrInvalid)
		}
		if _, ok := vocab[s]; !ok {
			return nil, fmt.Errorf("%w: special token %q not in vocabulary", ErrInvalid, s)
		}
		t.specials = append(t.specials, s)
		if s == EndOfText {
			t.eos = vocab[s]
		}
	}
	sort.SliceStable(t.specials, func(i, j int) bool { return len(t.specials[i]) > len(t.specials[j]) })
	return t, nil
}

// EOS returns the id of <|endoftext|> (50256 for GPT-2), or -1 when the vocabulary has none.
func (t *Tokenizer) EOS() int { return t.eos }

// VocabSize returns one more than the largest token id.
func (t *Tokenizer) VocabSize() int { return len(t.tokens) }

// TokenString returns the vocabulary spelling of id ("Ġthe"), or "" for an unknown id.
func (t *Tokenizer) TokenString(id int) string {
	if id < 0 || id >= len(t.tokens) {
		return ""
	}
	return t.tokens[id]
}

// TokenID returns the id of a vocabulary spelling.
func (t *Tokenizer) TokenID(tok string) (int, bool) {
	id, ok := t.vocab[tok]
	return id, ok
}

// Encode returns the ids of text. Special tokens (<|endoftext|> for GPT-2) written in the text
// become their ids, as Hugging Face tokenizers do; use EncodeOrdinary for untrusted text that
// must not smuggle control tokens in.
func (t *Tokenizer) Encode(text string) []int {
	ids := make([]int, 0, len(text)/3+1)
	for len(text) > 0 {
		at, special := t.nextSpecial(text)
		if at < 0 {
			break
		}
		ids = t.appendOrdinary(ids, text[:at])
		ids = append(ids, t.vocab[special])
		text = text[at+len(special):]
	}
	return t.appendOrdinary(ids, text)
}

// EncodeOrdinary returns the ids of text, treating special-token spellings as plain text.
func (t *Tokenizer) EncodeOrdinary(text string) []int {
	return t.appendOrdinary(make([]int, 0, len(text)/3+1), text)
}

// NextSpecial returns the byte offset and spelling of the leftmost special token in text (the
// longest one at that position), or -1: for callers that encode text whose parts they trust
// differently (the template of a chat prompt, but not its messages).
func (t *Tokenizer) NextSpecial(text string) (int, string) { return t.nextSpecial(text) }

// nextSpecial finds the leftmost special token in text, the longest one at that position.
func (t *Tokenizer) nextSpecial(text string) (int, string) {
	at, found := -1, ""
	for _, s := range t.specials {
		if i := strings.Index(text, s); i >= 0 && (at < 0 || i < at) {
			at, found = i, s
		}
	}
	return at, found
}

func (t *Tokenizer) appendOrdinary(ids []int, text string) []int {
	if text == "" {
		return ids
	}
	if t.addPrefixSpace && text[0] != ' ' {
		text = " " + text
	}
	var word []int32
	for i := 0; i < len(text); {
		end := nextPiece(text, i)
		piece := text[i:end]
		i = end
		if len(piece) == 1 {
			ids = append(ids, int(t.byteID[piece[0]]))
			continue
		}
		cacheable := len(piece) <= cacheMaxPiece
		if cacheable {
			if got, ok := t.cache.get(piece); ok {
				for _, id := range got {
					ids = append(ids, int(id))
				}
				continue
			}
		}
		word = word[:0]
		for j := 0; j < len(piece); j++ {
			word = append(word, t.byteID[piece[j]])
		}
		if t.naive {
			word = bpeNaive(word, t.merges)
		} else {
			word = bpeHeap(word, t.merges)
		}
		for _, id := range word {
			ids = append(ids, int(id))
		}
		if cacheable {
			t.cache.put(piece, append([]int32(nil), word...))
		}
	}
	return ids
}

// Decode returns the text of ids. Byte sequences that are not valid UTF-8 become U+FFFD, one
// per maximal invalid subsequence, exactly as Python's bytes.decode("utf-8", "replace"); ids
// outside the vocabulary decode to U+FFFD as well.
func (t *Tokenizer) Decode(ids []int) string {
	var buf []byte
	for _, id := range ids {
		buf = t.appendToken(buf, id)
	}
	if utf8.Valid(buf) {
		return string(buf)
	}
	out, _ := appendValidUTF8(make([]byte, 0, len(buf)+8), buf, true)
	return string(out)
}

func (t *Tokenizer) appendToken(buf []byte, id int) []byte {
	if id < 0 || id >= len(t.tokenBytes) || t.tokenBytes[id] == nil {
		return append(buf, "\uFFFD"...)
	}
	return append(buf, t.tokenBytes[id]...)
}

// StreamDecoder turns ids into text one at a time. The concatenation of everything Add and
// Flush return equals Decode of all the ids, and no returned string ends inside a UTF-8
// character: bytes that may still become a character are held until the next id decides.
// A StreamDecoder is not safe for concurrent use.
type StreamDecoder struct {
	t       *Tokenizer
	pending []byte
	out     []byte
}

// NewStreamDecoder returns a decoder with nothing pending.
func (t *Tokenizer) NewStreamDecoder() *StreamDecoder { return &StreamDecoder{t: t} }

// Add decodes one more id and returns the text that is now complete (possibly "").
func (d *StreamDecoder) Add(id int) string {
	d.pending = d.t.appendToken(d.pending, id)
	var n int
	d.out, n = appendValidUTF8(d.out[:0], d.pending, false)
	d.pending = d.pending[:copy(d.pending, d.pending[n:])]
	return string(d.out)
}

// Flush returns whatever is pending (an unfinished character becomes U+FFFD) and resets the
// decoder.
func (d *StreamDecoder) Flush() string {
	var s string
	if len(d.pending) > 0 {
		d.out, _ = appendValidUTF8(d.out[:0], d.pending, true)
		s = string(d.out)
	}
	d.pending = d.pending[:0]
	return s
}
