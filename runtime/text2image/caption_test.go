package text2image

import (
	"encoding/json"
	"errors"
	"os"
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
	data, err := os.ReadFile(captionVectors)
	if errors.Is(err, os.ErrNotExist) {
		t.Skipf("%s does not exist yet: the prior's training script writes it", captionVectors)
	}
	if err != nil {
		t.Fatal(err)
	}
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
	m, err := Load("../../examples/models/glyph-prior", "")
	if err != nil {
		t.Logf("ids not checked: %v", err)
	}
	for _, v := range vectors {
		got, err := NormalizeCaption(v.Raw)
		if err != nil || got != v.Normalized {
			t.Errorf("NormalizeCaption(%q) = %q, %v; Python: %q", v.Raw, got, err, v.Normalized)
			continue
		}
		if m != nil && v.IDs != nil {
			if ids := m.Tok.EncodeOrdinary(got); !slices.Equal(ids, v.IDs) {
				t.Errorf("%q: ids %v; Python: %v", got, ids, v.IDs)
			}
		}
	}
}
