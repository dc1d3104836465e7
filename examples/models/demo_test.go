// Package demo_test checks the demo models committed under examples/models against the files
// their training scripts (scripts/train/) wrote beside them: the Go tokenizer must encode a
// held-out Go file to exactly the ids of the Python trainer, the native GPT-2 must reproduce
// PyTorch's logits and greedy continuation, and the native VAE PyTorch's encoding and decoding of
// a held-out glyph.
package demo_test

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelrt/modelrt/native/gpt2"
	"github.com/modelrt/modelrt/native/vae"
	"github.com/modelrt/modelrt/runtime/tokenizer"
)

const (
	gptDir = "gpt2-go"
	vaeDir = "vae-glyphs"

	// The references were computed in float32 by PyTorch from the same F16-rounded weights and
	// written with 5–6 decimals; what remains is float32 summation order over a few layers.
	logitsAbsTol = 2e-4
	logitsRelTol = 1e-4
	vaeAbsTol    = 2e-4
	vaeRelTol    = 1e-3

	// maxReconMSE bounds the mean squared error (on [-1,1] pixels) of the held-out glyph's
	// reconstruction: a trained model is near 0.01, an untrained one near 0.3.
	maxReconMSE = 0.05
)

type gptCheck struct {
	File       string    `json:"file"`
	Text       string    `json:"text"`
	IDs        []int     `json:"ids"`
	ExtraText  string    `json:"extra_text"`
	ExtraIDs   []int     `json:"extra_ids"`
	PromptIDs  []int64   `json:"prompt_ids"`
	LastLogits []float32 `json:"last_logits"`
	GreedyIDs  []int64   `json:"greedy_ids"`
}

type vaeCheck struct {
	GlyphU8     []uint8   `json:"glyph_u8"`
	Shape       []int     `json:"shape"`
	Mean        []float32 `json:"mean"`
	Logvar      []float32 `json:"logvar"`
	LatentShape []int     `json:"latent_shape"`
	DecodedMean []float32 `json:"decoded_mean"`
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read check file (written by scripts/train): %v", err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
}

// compare fails t when got and want differ beyond |g−w| ≤ abs + rel·|w| anywhere, printing the
// largest errors and the first mismatching indices.
func compare(t *testing.T, what string, got, want []float32, abs, rel float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d values, want %d", what, len(got), len(want))
	}
	var maxAbs, maxRel float64
	var bad []int
	for i := range want {
		d := math.Abs(float64(got[i]) - float64(want[i]))
		maxAbs = max(maxAbs, d)
		if w := math.Abs(float64(want[i])); w > 0 {
			maxRel = max(maxRel, d/w)
		}
		if d > abs+rel*math.Abs(float64(want[i])) || math.IsNaN(float64(got[i])) {
			bad = append(bad, i)
		}
	}
	if len(bad) > 0 {
		var first []string
		for _, i := range bad[:min(5, len(bad))] {
			first = append(first, fmt.Sprintf("[%d] got %g want %g", i, got[i], want[i]))
		}
		t.Errorf("%s: %d of %d values outside abs %g + rel %g (max abs %.3g, max rel %.3g); first: %s",
			what, len(bad), len(want), abs, rel, maxAbs, maxRel, strings.Join(first, ", "))
		return
	}
	t.Logf("%s: %d values, max abs %.3g, max rel %.3g", what, len(want), maxAbs, maxRel)
}

func TestGPT2GoTokenizer(t *testing.T) {
	tok, err := tokenizer.Load(gptDir)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := gpt2.LoadConfig(filepath.Join(gptDir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if tok.VocabSize() != cfg.VocabSize || tok.EOS() != cfg.VocabSize-1 {
		t.Errorf("tokenizer: %d tokens, <|endoftext|> = %d; config: vocab_size %d (want <|endoftext|> last)",
			tok.VocabSize(), tok.EOS(), cfg.VocabSize)
	}
	var c gptCheck
	readJSON(t, filepath.Join(gptDir, "testdata", "check.json"), &c)
	if c.ExtraText == "" {
		t.Fatal("check.json has no extra_text (non-ASCII sample); rerun scripts/train/train_gpt2_go.py --export-only")
	}
	for _, s := range []struct {
		name, text string
		ids        []int
	}{{c.File, c.Text, c.IDs}, {"non-ASCII sample", c.ExtraText, c.ExtraIDs}} {
		got := tok.Encode(s.text)
		sameIDs(t, tok, s.name, got, s.ids)
		if back := tok.Decode(s.ids); back != s.text {
			t.Errorf("%s: decode of the trainer's ids differs from the text:\n got  %q\n want %q", s.name, back, s.text)
		}
		t.Logf("%s: %d bytes -> %d tokens (%.2f bytes/token)", s.name, len(s.text), len(got), float64(len(s.text))/float64(len(got)))
	}
}

func sameIDs(t *testing.T, tok *tokenizer.Tokenizer, name string, got, want []int) {
	t.Helper()
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			t.Errorf("encode %s: first difference at id %d: got %d (%q), Python trainer %d (%q)",
				name, i, got[i], tok.TokenString(got[i]), want[i], tok.TokenString(want[i]))
			return
		}
	}
	if len(got) != len(want) {
		t.Errorf("encode %s: %d ids, Python trainer %d", name, len(got), len(want))
	}
}

func TestGPT2GoMatchesPyTorch(t *testing.T) {
	m, err := gpt2.Load(gptDir)
	if err != nil {
		t.Fatal(err)
	}
	var c gptCheck
	readJSON(t, filepath.Join(gptDir, "testdata", "check.json"), &c)
	V := m.Config().VocabSize
	cache := m.NewCache(1)
	logits := make([]float32, V)
	if err := m.Forward(cache, c.PromptIDs, 1, len(c.PromptIDs), nil, true, logits); err != nil {
		t.Fatal(err)
	}
	compare(t, "last-position logits", logits, c.LastLogits, logitsAbsTol, logitsRelTol)

	// Greedy continuation, one token per step through the KV cache, as the generate loop runs.
	var got []int64
	for range c.GreedyIDs {
		next := int64(argmax(logits))
		got = append(got, next)
		if err := m.Forward(cache, []int64{next}, 1, 1, nil, true, logits); err != nil {
			t.Fatal(err)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(c.GreedyIDs) {
		t.Errorf("greedy continuation:\n got  %v\n want %v", got, c.GreedyIDs)
	}
}

func TestGPT2GoWritesGo(t *testing.T) {
	m, err := gpt2.Load(gptDir)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.Load(gptDir)
	if err != nil {
		t.Fatal(err)
	}
	prompt := "func (b *Buffer) Len() int {"
	ids := tok.Encode(prompt)
	text := greedy(t, m, ids, 48, tok)
	t.Logf("greedy continuation of %q:\n%s", prompt, text)
	found := false
	for _, kw := range []string{"func ", "return", "var ", "type ", "if ", "for "} {
		found = found || strings.Contains(text, kw)
	}
	if !found {
		t.Errorf("greedy continuation has no Go keyword: %q", text)
	}
}

func greedy(t *testing.T, m *gpt2.Model, ids []int, n int, tok *tokenizer.Tokenizer) string {
	t.Helper()
	V := m.Config().VocabSize
	cache := m.NewCache(1)
	in := make([]int64, len(ids))
	for i, id := range ids {
		in[i] = int64(id)
	}
	logits := make([]float32, V)
	var out []int
	for range n {
		if err := m.Forward(cache, in, 1, len(in), nil, true, logits); err != nil {
			t.Fatal(err)
		}
		next := argmax(logits)
		out = append(out, next)
		in = []int64{int64(next)}
	}
	return tok.Decode(out)
}

func argmax(v []float32) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}

func TestVAEGlyphsMatchesPyTorch(t *testing.T) {
	m, err := vae.Load(vaeDir)
	if err != nil {
		t.Fatal(err)
	}
	var c vaeCheck
	readJSON(t, filepath.Join(vaeDir, "testdata", "check.json"), &c)
	if len(c.Shape) != 4 || len(c.LatentShape) != 4 {
		t.Fatalf("check.json: shape %v, latent_shape %v; want 4 dimensions each", c.Shape, c.LatentShape)
	}
	b, ch, h, w := c.Shape[0], c.Shape[1], c.Shape[2], c.Shape[3]
	if len(c.GlyphU8) != h*w {
		t.Fatalf("check.json: glyph has %d pixels, want %d", len(c.GlyphU8), h*w)
	}
	// The glyph is grayscale; the model sees it repeated on every channel, in [-1, 1].
	img := make([]float32, b*ch*h*w)
	for k := range ch {
		for i, p := range c.GlyphU8 {
			img[k*h*w+i] = float32(p)/127.5 - 1
		}
	}
	mean, logvar, err := m.Encode(img, b, ch, h, w)
	if err != nil {
		t.Fatal(err)
	}
	compare(t, "encode mean", mean, c.Mean, vaeAbsTol, vaeRelTol)
	compare(t, "encode logvar", logvar, c.Logvar, vaeAbsTol, vaeRelTol)
	ls := c.LatentShape
	dec, err := m.Decode(c.Mean, ls[0], ls[1], ls[2], ls[3])
	if err != nil {
		t.Fatal(err)
	}
	compare(t, "decode of the mean", dec, c.DecodedMean, vaeAbsTol, vaeRelTol)
	var mse float64
	for i := range img {
		d := float64(dec[i] - img[i])
		mse += d * d
	}
	mse /= float64(len(img))
	if mse > maxReconMSE {
		t.Errorf("reconstruction of the held-out glyph: MSE %.4f > %g", mse, maxReconMSE)
	} else {
		t.Logf("reconstruction of the held-out glyph: MSE %.4f", mse)
	}
}

// TestGlyphPriorMatchesPyTorch: the text-to-image prior's last-position logits after a
// caption and the image marker (and after the null caption) equal the training script's
// PyTorch ones (glyph-prior/testdata/check.json, written at export).
func TestGlyphPriorMatchesPyTorch(t *testing.T) {
	const dir = "glyph-prior"
	m, err := gpt2.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]struct {
		InputIDs   []int64   `json:"input_ids"`
		LastLogits []float32 `json:"last_logits"`
	}
	readJSON(t, filepath.Join(dir, "testdata", "check.json"), &c)
	for _, name := range []string{"conditional", "null"} {
		row, ok := c[name]
		if !ok || len(row.InputIDs) == 0 {
			t.Fatalf("check.json has no %s row", name)
		}
		logits := make([]float32, m.Config().VocabSize)
		if err := m.Forward(m.NewCache(1), row.InputIDs, 1, len(row.InputIDs), nil, true, logits); err != nil {
			t.Fatal(err)
		}
		compare(t, name+" last-position logits", logits, row.LastLogits, logitsAbsTol, logitsRelTol)
	}
}
