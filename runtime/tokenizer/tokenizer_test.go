package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

const (
	gpt2Dir     = "../../testdata/models/gpt2-tiny"
	vectorsPath = "../../testdata/tokenizer/gpt2_vectors.json"
	vectorsFmt  = "modelrt-tokenizer-vectors/v1"
	gpt2EOS     = 50256
	gpt2Vocab   = 50257
)

var (
	gpt2Once sync.Once
	gpt2Tok  *Tokenizer
	gpt2Err  error
)

func loadGPT2(tb testing.TB) *Tokenizer {
	tb.Helper()
	gpt2Once.Do(func() { gpt2Tok, gpt2Err = Load(gpt2Dir) })
	if gpt2Err != nil {
		tb.Fatal(gpt2Err)
	}
	return gpt2Tok
}

type vectorCase struct {
	Text string `json:"text"`
	IDs  []int  `json:"ids"`
}

type vectorFile struct {
	Format        string       `json:"format"`
	Generator     string       `json:"generator"`
	EOS           int          `json:"eos"`
	Cases         []vectorCase `json:"cases"`
	OrdinaryCases []vectorCase `json:"ordinary_cases"`
}

func loadVectors(t *testing.T) vectorFile {
	t.Helper()
	data, err := os.ReadFile(vectorsPath)
	if err != nil {
		t.Fatal(err)
	}
	var v vectorFile
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("%s: %v", vectorsPath, err)
	}
	if v.Format != vectorsFmt {
		t.Fatalf("%s: format %q, want %q (regenerate with %s)", vectorsPath, v.Format, vectorsFmt, v.Generator)
	}
	if len(v.Cases) < 50 || len(v.OrdinaryCases) == 0 {
		t.Fatalf("%s: only %d cases and %d ordinary cases", vectorsPath, len(v.Cases), len(v.OrdinaryCases))
	}
	return v
}

// firstDiff reports the first index where got and want differ, with context.
func firstDiff(got, want []int) string {
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	lo := max(0, i-3)
	return fmt.Sprintf("first mismatch at index %d (len got %d, want %d): got[%d:]=%v want[%d:]=%v",
		i, len(got), len(want), lo, got[lo:min(len(got), i+4)], lo, want[lo:min(len(want), i+4)])
}

func TestVectors(t *testing.T) {
	tok := loadGPT2(t)
	v := loadVectors(t)
	if tok.EOS() != v.EOS || tok.EOS() != gpt2EOS {
		t.Errorf("EOS() = %d, want %d", tok.EOS(), gpt2EOS)
	}
	if tok.VocabSize() != gpt2Vocab {
		t.Errorf("VocabSize() = %d, want %d", tok.VocabSize(), gpt2Vocab)
	}
	if tok.naive {
		t.Error("GPT-2's merges should be in training order (fast BPE path)")
	}
	check := func(name string, cases []vectorCase, enc func(string) []int) {
		for i, c := range cases {
			got := enc(c.Text)
			if !slices.Equal(got, c.IDs) {
				t.Errorf("%s[%d] %q: %s", name, i, trunc(c.Text), firstDiff(got, c.IDs))
			}
			if dec := tok.Decode(c.IDs); dec != c.Text {
				t.Errorf("%s[%d]: Decode = %q, want %q", name, i, trunc(dec), trunc(c.Text))
			}
		}
	}
	check("cases", v.Cases, tok.Encode)
	check("ordinary_cases", v.OrdinaryCases, tok.EncodeOrdinary)
}

func trunc(s string) string {
	if len(s) > 60 {
		return s[:60] + "…"
	}
	return s
}

func TestStreamMatchesDecode(t *testing.T) {
	tok := loadGPT2(t)
	v := loadVectors(t)
	for i, c := range v.Cases {
		d := tok.NewStreamDecoder()
		var sb strings.Builder
		for _, id := range c.IDs {
			delta := d.Add(id)
			if !utf8.ValidString(delta) {
				t.Fatalf("case %d: delta %q is not valid UTF-8", i, delta)
			}
			sb.WriteString(delta)
		}
		sb.WriteString(d.Flush())
		if sb.String() != c.Text {
			t.Errorf("case %d: stream %q, want %q", i, trunc(sb.String()), trunc(c.Text))
		}
	}
}

// TestStreamHoldsPartialCharacter uses an emoji that GPT-2 splits over several tokens.
func TestStreamHoldsPartialCharacter(t *testing.T) {
	tok := loadGPT2(t)
	ids := tok.Encode("a🦀b")
	if len(ids) < 4 {
		t.Fatalf("expected the crab to take several tokens, got %v", ids)
	}
	d := tok.NewStreamDecoder()
	var deltas []string
	for _, id := range ids {
		deltas = append(deltas, d.Add(id))
	}
	deltas = append(deltas, d.Flush())
	joined := strings.Join(deltas, "")
	if joined != "a🦀b" {
		t.Fatalf("joined deltas %q", joined)
	}
	for _, s := range deltas {
		if s != "" && s != "a" && s != "🦀" && s != "b" && s != "🦀b" {
			t.Errorf("delta %q splits a character (all deltas %q)", s, deltas)
		}
	}
}

// Python: bytes.decode("utf-8", "replace") results, written by hand from its documented
// maximal-subpart behaviour.
func TestDecodeReplacesLikePython(t *testing.T) {
	cases := []struct {
		in   []byte
		want string
	}{
		{[]byte("plain"), "plain"},
		{[]byte{0xe2, 0x82, 'A'}, "\uFFFDA"},
		{[]byte{0xe2, 0x82}, "\uFFFD"},
		{[]byte{0x80, 0x80}, "\uFFFD\uFFFD"},
		{[]byte{0xf0, 0x9f, 0xa6, 0x80}, "🦀"},
		{[]byte{0xf0, 0x9f, 0xa6}, "\uFFFD"},
		{[]byte{0xf0, 0x9f, 0x41}, "\uFFFDA"},
		{[]byte{0xed, 0xa0, 0x80}, "\uFFFD\uFFFD\uFFFD"}, // surrogate: ED A0 is not a valid prefix
		{[]byte{0xe0, 0x80}, "\uFFFD\uFFFD"},             // overlong: E0 80 is not a valid prefix
		{[]byte{0xc0, 0xaf}, "\uFFFD\uFFFD"},
		{[]byte{0xf4, 0x90, 0x80, 0x80}, "\uFFFD\uFFFD\uFFFD\uFFFD"},
		{[]byte{0xff, 'x', 0xc3}, "\uFFFDx\uFFFD"},
	}
	for _, c := range cases {
		got, n := appendValidUTF8(nil, c.in, true)
		if string(got) != c.want || n != len(c.in) {
			t.Errorf("%x: got %q (consumed %d), want %q", c.in, got, n, c.want)
		}
		// Stream the same bytes one at a time through a decoder built on byte tokens.
		tok := loadGPT2(t)
		d := tok.NewStreamDecoder()
		var sb strings.Builder
		for _, b := range c.in {
			sb.WriteString(d.Add(int(tok.byteID[b])))
		}
		sb.WriteString(d.Flush())
		if sb.String() != c.want {
			t.Errorf("%x streamed: got %q, want %q", c.in, sb.String(), c.want)
		}
	}
}

func TestPreTokenize(t *testing.T) {
	cases := []struct {
		in   string
		want []string
	}{
		{"Hello world", []string{"Hello", " world"}},
		{"it's", []string{"it", "'s"}},
		{"IT'S", []string{"IT", "'", "S"}},
		{"a  b", []string{"a", " ", " b"}},
		{"a \n b", []string{"a", " \n", " b"}},
		{"x  ", []string{"x", "  "}},
		{"\n\nx", []string{"\n", "\n", "x"}},
		{" 123abc", []string{" 123", "abc"}},
		{"!!'s", []string{"!!'", "s"}},
		{"'ll've're", []string{"'ll", "'ve", "'re"}},
		{"'r", []string{"'", "r"}},
		{"\xff\xfeab", []string{"\xff\xfe", "ab"}},
		{"日本 語", []string{"日本", " 語"}},
	}
	for _, c := range cases {
		var got []string
		for i := 0; i < len(c.in); {
			e := nextPiece(c.in, i)
			got = append(got, c.in[i:e])
			i = e
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%q: got %q, want %q", c.in, got, c.want)
		}
	}
}

// TestHeapMatchesNaive holds the O(n log n) BPE to GPT-2's reference loop on real text and on
// long runs where the two orders of work differ most.
func TestHeapMatchesNaive(t *testing.T) {
	tok := loadGPT2(t)
	v := loadVectors(t)
	texts := []string{strings.Repeat("a", 500), strings.Repeat("ab", 300), strings.Repeat("=-", 99)}
	for _, c := range v.Cases {
		texts = append(texts, c.Text)
	}
	for _, s := range texts {
		for i := 0; i < len(s); {
			e := nextPiece(s, i)
			var word []int32
			for j := i; j < e; j++ {
				word = append(word, tok.byteID[s[j]])
			}
			want := bpeNaive(slices.Clone(word), tok.merges)
			got := bpeHeap(word, tok.merges)
			if !slices.Equal(got, want) {
				t.Fatalf("piece %q: heap %v, naive %v", trunc(s[i:e]), got, want)
			}
			i = e
		}
	}
}

// TestNaiveFallback checks that a merge list out of training order (a merge that consumes
// "bc" ranked before the merge producing it) switches to GPT-2's reference loop.
func TestNaiveFallback(t *testing.T) {
	vocab := byteVocab()
	vocab["bc"] = 300
	vocab["abc"] = 301
	tok, err := New(vocab, [][2]string{{"a", "bc"}, {"b", "c"}})
	if err != nil {
		t.Fatal(err)
	}
	if !tok.naive {
		t.Fatal("out-of-order merges not detected")
	}
	// Reference: "b c" is the only rankable pair, then "a bc" → one token.
	if got := tok.Encode("abc"); !slices.Equal(got, []int{301}) {
		t.Fatalf("Encode(abc) = %v, want [301]", got)
	}
}

func byteVocab() map[string]int {
	v := make(map[string]int, 256)
	for b := range 256 {
		v[string(byteRunes[b])] = b
	}
	return v
}

// TestFormatsAgree writes GPT-2's vocabulary as vocab.json + merges.txt and as tokenizer.json
// (with both merge spellings) and expects identical encodings.
func TestFormatsAgree(t *testing.T) {
	ref := loadGPT2(t)
	vocab, err := os.ReadFile(filepath.Join(gpt2Dir, "encoder.json"))
	if err != nil {
		t.Fatal(err)
	}
	mergesTxt, err := os.ReadFile(filepath.Join(gpt2Dir, "vocab.bpe"))
	if err != nil {
		t.Fatal(err)
	}
	hfDir := t.TempDir()
	writeFile(t, filepath.Join(hfDir, "vocab.json"), vocab)
	writeFile(t, filepath.Join(hfDir, "merges.txt"), mergesTxt)

	merges, err := ParseMerges(mergesTxt)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]int
	if err := json.Unmarshal(vocab, &v); err != nil {
		t.Fatal(err)
	}
	delete(v, EndOfText)
	for _, pairs := range []bool{false, true} {
		ms := make([]any, len(merges))
		for i, m := range merges {
			if pairs {
				ms[i] = []string{m[0], m[1]}
			} else {
				ms[i] = m[0] + " " + m[1]
			}
		}
		doc := map[string]any{
			"added_tokens":  []map[string]any{{"id": gpt2EOS, "content": EndOfText, "special": true}},
			"pre_tokenizer": map[string]any{"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
			"model":         map[string]any{"type": "BPE", "vocab": v, "merges": ms},
		}
		data, err := json.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "tokenizer.json"), data)
		got, err := Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		compareTokenizers(t, fmt.Sprintf("tokenizer.json (pairs=%v)", pairs), got, ref)
	}
	got, err := Load(hfDir)
	if err != nil {
		t.Fatal(err)
	}
	compareTokenizers(t, "vocab.json+merges.txt", got, ref)
}

func compareTokenizers(t *testing.T, name string, got, ref *Tokenizer) {
	t.Helper()
	text := "Hello world<|endoftext|> it's 12 🦀\n\n  x"
	if g, w := got.Encode(text), ref.Encode(text); !slices.Equal(g, w) {
		t.Errorf("%s: %s", name, firstDiff(g, w))
	}
	if got.EOS() != gpt2EOS || got.VocabSize() != gpt2Vocab {
		t.Errorf("%s: EOS %d VocabSize %d", name, got.EOS(), got.VocabSize())
	}
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLoadErrorsNameFile(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(dir); !errors.Is(err, ErrNoTokenizer) {
		t.Errorf("empty dir: %v, want ErrNoTokenizer", err)
	}
	writeFile(t, filepath.Join(dir, "vocab.json"), []byte(`{"a": 0}`))
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "merges.txt") {
		t.Errorf("missing merges.txt: %v", err)
	}
	writeFile(t, filepath.Join(dir, "merges.txt"), []byte("#version: 0.2\na b c\n"))
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "merges.txt") || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("bad merges.txt: %v", err)
	}
	writeFile(t, filepath.Join(dir, "vocab.json"), []byte(`[1,2]`))
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "vocab.json") {
		t.Errorf("bad vocab.json: %v", err)
	}
	tj := t.TempDir()
	writeFile(t, filepath.Join(tj, "tokenizer.json"), []byte(`{"model":{"type":"WordPiece","vocab":{}}}`))
	if _, err := Load(tj); err == nil || !strings.Contains(err.Error(), "tokenizer.json") || !strings.Contains(err.Error(), "WordPiece") {
		t.Errorf("WordPiece tokenizer.json: %v", err)
	}
	vocab := byteVocab()
	if _, err := New(vocab, [][2]string{{"a", "b"}}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `"ab"`) {
		t.Errorf("merge result missing: %v", err)
	}
	delete(vocab, "a")
	if _, err := New(vocab, nil); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "0x61") {
		t.Errorf("byte token missing: %v", err)
	}
}

func TestConcurrentEncode(t *testing.T) {
	tok := loadGPT2(t)
	v := loadVectors(t)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range v.Cases {
				c := v.Cases[(i+g*7)%len(v.Cases)]
				if got := tok.Encode(c.Text); !slices.Equal(got, c.IDs) {
					t.Errorf("goroutine %d case %q: %s", g, trunc(c.Text), firstDiff(got, c.IDs))
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestCacheBounded(t *testing.T) {
	c := newPieceCache(4)
	for i := range 100 {
		c.put(fmt.Sprint(i), []int32{int32(i)})
	}
	if n := len(c.young) + len(c.old); n > 8 {
		t.Fatalf("cache holds %d entries, limit 2×4", n)
	}
	if ids, ok := c.get("99"); !ok || ids[0] != 99 {
		t.Fatalf("latest entry lost: %v %v", ids, ok)
	}
}

func FuzzRoundTrip(f *testing.F) {
	for _, s := range []string{"", "Hello world", "it's 12 🦀\n\n  x", "日本語", "\t\r\n", "a\u0301", "<|endoftext|>", strings.Repeat("ab", 40)} {
		f.Add(s)
	}
	tok := loadGPT2(f)
	f.Fuzz(func(t *testing.T, s string) {
		ids := tok.EncodeOrdinary(s)
		got := tok.Decode(ids)
		if utf8.ValidString(s) && got != s {
			t.Fatalf("Decode(EncodeOrdinary(%q)) = %q", s, got)
		}
		if got := tok.Decode(tok.Encode(s)); utf8.ValidString(s) && got != s {
			t.Fatalf("Decode(Encode(%q)) = %q", s, got)
		}
		if !utf8.ValidString(got) {
			t.Fatalf("Decode returned invalid UTF-8 %q", got)
		}
		d := tok.NewStreamDecoder()
		var sb strings.Builder
		for _, id := range ids {
			sb.WriteString(d.Add(id))
		}
		sb.WriteString(d.Flush())
		if sb.String() != got {
			t.Fatalf("stream %q != Decode %q", sb.String(), got)
		}
		var word []int32
		for i := 0; i < len(s); {
			e := nextPiece(s, i)
			if e <= i || e > len(s) {
				t.Fatalf("nextPiece(%q, %d) = %d", s, i, e)
			}
			word = word[:0]
			for j := i; j < e; j++ {
				word = append(word, tok.byteID[s[j]])
			}
			if a, b := bpeHeap(slices.Clone(word), tok.merges), bpeNaive(word, tok.merges); !slices.Equal(a, b) {
				t.Fatalf("piece %q: heap %v naive %v", s[i:e], a, b)
			}
			i = e
		}
	})
}

func FuzzParseMerges(f *testing.F) {
	f.Add([]byte("#version: 0.2\nĠ t\nĠ a\n"))
	f.Add([]byte("a b\r\nc d"))
	f.Add([]byte("a  b\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		merges, err := ParseMerges(data)
		if err != nil {
			return
		}
		vocab := byteVocab()
		for _, m := range merges {
			for _, s := range []string{m[0], m[1], m[0] + m[1]} {
				if _, ok := vocab[s]; !ok {
					vocab[s] = len(vocab)
				}
			}
		}
		tok, err := New(vocab, merges)
		if err != nil {
			t.Fatalf("merges %q with a complete vocabulary: %v", merges, err)
		}
		s := string(data)
		if got := tok.Decode(tok.EncodeOrdinary(s)); utf8.ValidString(s) && got != s {
			t.Fatalf("round trip %q → %q", s, got)
		}
	})
}

func FuzzParseTokenizerJSON(f *testing.F) {
	f.Add([]byte(`{"model":{"type":"BPE","vocab":{"a":0},"merges":["a a"]},"pre_tokenizer":{"type":"ByteLevel"}}`))
	f.Add([]byte(`{"model":{"vocab":{},"merges":[["a","b"]]},"pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"ByteLevel"}]},"added_tokens":[{"id":5,"content":"<x>"}]}`))
	f.Add([]byte(`{"model":{"vocab":{"a":-1}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, err := ParseTokenizerJSON(data)
		if err != nil {
			return
		}
		s := "hello <x> wörld 12"
		_ = tok.Decode(tok.Encode(s))
	})
}

func FuzzParseVocab(f *testing.F) {
	f.Add([]byte(`{"a": 0, "b": 1}`))
	f.Add([]byte(`{"a": 16777216}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		vocab, err := ParseVocab(data)
		if err != nil {
			return
		}
		base := byteVocab()
		for k, v := range vocab {
			base[k] = v + 256
		}
		tok, err := New(base, nil)
		if err != nil {
			return
		}
		_ = tok.Decode(tok.Encode("fuzz ✓"))
	})
}

func BenchmarkEncode(b *testing.B) {
	tok := loadGPT2(b)
	data, err := os.ReadFile(vectorsPath)
	if err != nil {
		b.Fatal(err)
	}
	var v vectorFile
	if err := json.Unmarshal(data, &v); err != nil {
		b.Fatal(err)
	}
	var sb strings.Builder
	for _, c := range v.Cases {
		sb.WriteString(c.Text)
	}
	text := sb.String()
	b.Run("cached", func(b *testing.B) {
		b.SetBytes(int64(len(text)))
		for b.Loop() {
			tok.EncodeOrdinary(text)
		}
	})
	b.Run("cold", func(b *testing.B) {
		b.SetBytes(int64(len(text)))
		for b.Loop() {
			tok.cache = newPieceCache(cacheEntries)
			tok.EncodeOrdinary(text)
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	tok := loadGPT2(b)
	ids := tok.Encode(strings.Repeat("The quick brown fox jumps over the lazy dog. 🦀 ", 200))
	b.SetBytes(int64(len(tok.Decode(ids))))
	for b.Loop() {
		tok.Decode(ids)
	}
}

func TestAccessors(t *testing.T) {
	tok := loadGPT2(t)
	if s := tok.TokenString(18435); s != "ĠHello" {
		t.Errorf("TokenString(18435) = %q, want ĠHello", s)
	}
	if id, ok := tok.TokenID(EndOfText); !ok || id != gpt2EOS {
		t.Errorf("TokenID(%s) = %d %v", EndOfText, id, ok)
	}
	if s := tok.TokenString(gpt2Vocab); s != "" {
		t.Errorf("TokenString(out of range) = %q", s)
	}
	if got := tok.Decode([]int{-1, 15496, gpt2Vocab}); got != "\uFFFDHello\uFFFD" {
		t.Errorf("Decode with unknown ids = %q", got)
	}
	if got := tok.Decode([]int{gpt2EOS}); got != EndOfText {
		t.Errorf("Decode(EOS) = %q", got)
	}
}

// TestAddPrefixSpace: tokenizer.json's ByteLevel add_prefix_space encodes "Hello" as " Hello"
// (per segment between special tokens), as Hugging Face tokenizers do.
func TestAddPrefixSpace(t *testing.T) {
	ref := loadGPT2(t)
	doc := map[string]any{
		"added_tokens":  []map[string]any{{"id": gpt2EOS, "content": EndOfText}},
		"pre_tokenizer": map[string]any{"type": "ByteLevel", "add_prefix_space": true},
		"model":         map[string]any{"type": "BPE", "vocab": gpt2VocabMap(t), "merges": gpt2MergeStrings(t)},
	}
	data, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := ParseTokenizerJSON(data)
	if err != nil {
		t.Fatal(err)
	}
	got := tok.Encode("Hello<|endoftext|>world")
	want := slices.Concat(ref.Encode(" Hello"), []int{gpt2EOS}, ref.Encode(" world"))
	if !slices.Equal(got, want) {
		t.Errorf("%s", firstDiff(got, want))
	}
}

func gpt2VocabMap(t *testing.T) map[string]int {
	data, err := os.ReadFile(filepath.Join(gpt2Dir, "encoder.json"))
	if err != nil {
		t.Fatal(err)
	}
	v, err := ParseVocab(data)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func gpt2MergeStrings(t *testing.T) []string {
	data, err := os.ReadFile(filepath.Join(gpt2Dir, "vocab.bpe"))
	if err != nil {
		t.Fatal(err)
	}
	merges, err := ParseMerges(data)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(merges))
	for i, m := range merges {
		out[i] = m[0] + " " + m[1]
	}
	return out
}
