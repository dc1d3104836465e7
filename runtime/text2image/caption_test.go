package text2image

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestNormalizeCaption(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"the letter A", "the letter A"},
		{"  THE   Letter   a  ", "the letter a"},
		{"the capital letter g", "the capital letter G"},
		{"The Lowercase Letter Q", "the lowercase letter q"},
		{"the digit 7", "the digit 7"},
		{"the character ?", "the character ?"},
		{"the greek letter Ω", "the greek letter Ω"},
		{"the capital letter ω", "the capital letter Ω"},
		// Python's str.upper/str.lower, not Go's single-rune mappings.
		{"the capital letter ß", "the capital letter SS"},
		{"the lowercase letter İ", "the lowercase letter i̇"},
		{"the capital letter é", "the capital letter É"},
		{"the lowercase letter Σ", "the lowercase letter σ"},
		{"the letter A, Bold  ITALIC", "the letter A, bold italic"},
		{"the letter A,bold,,serif bold", "the letter A, bold serif"},
		{"the letter A , mono, condensed light", "the letter A, mono condensed light"},
		{"the character ,, sans", "the character ,, sans"},
		{"the character ,", "the character ,"},
		// Outside the grammar: only trimmed and collapsed.
		{"the letter A bold", "the letter A bold"},
		{"the letter A, shiny", "the letter A, shiny"},
		{"the letter AB", "the letter AB"},
		{"the letter A,", "the letter A,"},
		{"  A   cat\tin\n a hat ", "A cat in a hat"},
		{"THE LETTER", "THE LETTER"},
	} {
		got, err := NormalizeCaption(c.in)
		if err != nil || got != c.want {
			t.Errorf("NormalizeCaption(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{"", "   ", "\t\n"} {
		if _, err := NormalizeCaption(in); !errors.Is(err, ErrEmptyCaption) {
			t.Errorf("NormalizeCaption(%q): err %v, want ErrEmptyCaption", in, err)
		}
	}
}

// captionVectors is testdata/text2image/captions.json, written by the prior's training script:
// the Go normalisation and tokenization must equal the Python ones.
const captionVectors = "../../testdata/text2image/captions.json"

func TestCaptionVectorsFromTraining(t *testing.T) {
	if _, err := os.Stat(captionVectors); errors.Is(err, os.ErrNotExist) {
		t.Skipf("%s does not exist yet: the prior's training script writes it", captionVectors)
	}
	m, err := Load("../../examples/models/glyph-prior", "")
	if err != nil {
		t.Logf("ids not checked: %v", err)
	}
	checkCaptionVectors(t, captionVectors, m)
}

// TestCaptionVectorsReader runs the check on vectors made here for the fixture, in both
// shapes the training script may write (a list, or an object holding the list).
func TestCaptionVectorsReader(t *testing.T) {
	m := loadFixture(t)
	raw := "  THE capital letter r ,Bold  "
	prompt, norm, n, err := m.Prompt(raw)
	if err != nil {
		t.Fatal(err)
	}
	vectors := []map[string]any{
		{"raw": raw, "normalized": norm, "ids": prompt[:n]},
		{"raw": "the digit 7", "normalized": "the digit 7", "ids": nil},
	}
	for _, doc := range []any{vectors, map[string]any{"format": "x", "vectors": vectors}} {
		data, _ := json.Marshal(doc)
		path := filepath.Join(t.TempDir(), "captions.json")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		checkCaptionVectors(t, path, m)
	}
}

// checkCaptionVectors compares NormalizeCaption (and, with m, the tokenizer) with the vectors
// in path.
func checkCaptionVectors(t *testing.T, path string, m *Model) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	captionVectors := path
	type vector struct {
		Raw        string `json:"raw"`
		Normalized string `json:"normalized"`
		IDs        []int  `json:"ids"`
	}
	// A list of vectors, or an object with the list under some key.
	var vectors []vector
	if err := json.Unmarshal(data, &vectors); err != nil {
		var obj map[string]json.RawMessage
		if json.Unmarshal(data, &obj) != nil {
			t.Fatalf("%s: %v", captionVectors, err)
		}
		for _, raw := range obj {
			if json.Unmarshal(raw, &vectors) == nil && len(vectors) > 0 && vectors[0].Raw != "" {
				break
			}
			vectors = nil
		}
	}
	if len(vectors) == 0 {
		t.Fatalf("%s holds no vectors", captionVectors)
	}
	for _, v := range vectors {
		got, err := NormalizeCaption(v.Raw)
		if err != nil || got != v.Normalized {
			t.Errorf("NormalizeCaption(%q) = %q, %v; Python: %q", v.Raw, got, err, v.Normalized)
			continue
		}
		if m != nil && v.IDs != nil {
			// The vectors may hold the caption's BPE ids, or the prefix (padded to P), or the
			// whole prompt with the image marker: any of the three must match.
			bpe := m.Tok.EncodeOrdinary(got)
			prompt, _, _, err := m.Prompt(v.Raw)
			if err != nil {
				t.Errorf("%q: %v", v.Raw, err)
				continue
			}
			P := m.Facts.PrefixLength
			if !slices.Equal(bpe, v.IDs) && !slices.Equal(prompt, v.IDs) && !slices.Equal(prompt[:P], v.IDs) {
				t.Errorf("%q: BPE ids %v (prompt %v); Python: %v", got, bpe, prompt, v.IDs)
			}
		}
	}
}
