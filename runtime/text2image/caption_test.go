package text2image

import (
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
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
		// Python's str.upper/str.lower, kept only when the result is one character.
		{"the capital letter ß", "the capital letter ß"},
		{"the lowercase letter İ", "the lowercase letter İ"},
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
		// Keywords fold ASCII only, as the training script: "ſ" (long s) is not "s".
		{"the lowercaſe letter q", "the lowercaſe letter q"},
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
	m, err := Load("../../examples/models/glyph-prior", "")
	if err != nil {
		t.Fatal(err)
	}
	checkCaptionVectors(t, captionVectors, m)
}

// checkCaptionVectors compares NormalizeCaption and, with m, the tokenizer and the prefix
// check with the vectors in path: {"cases": [{"raw", "normalized", "ids", "error"}]}, where
// ids are the caption's BPE ids and error, when set, is what the caption must fail with.
func checkCaptionVectors(t *testing.T, path string, m *Model) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Cases []struct {
			Raw        string `json:"raw"`
			Normalized string `json:"normalized"`
			IDs        []int  `json:"ids"`
			Error      string `json:"error"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if len(doc.Cases) == 0 {
		t.Fatalf("%s holds no cases", path)
	}
	for _, v := range doc.Cases {
		got, err := NormalizeCaption(v.Raw)
		if v.Error == "empty caption" {
			if !errors.Is(err, ErrEmptyCaption) {
				t.Errorf("NormalizeCaption(%q) = %q, %v; want ErrEmptyCaption", v.Raw, got, err)
			}
			continue
		}
		if err != nil || got != v.Normalized {
			t.Errorf("NormalizeCaption(%q) = %q, %v; Python: %q", v.Raw, got, err, v.Normalized)
			continue
		}
		if m == nil {
			continue
		}
		if bpe := m.Tok.EncodeOrdinary(got); v.IDs != nil && !slices.Equal(bpe, v.IDs) {
			t.Errorf("%q: BPE ids %v; Python: %v", got, bpe, v.IDs)
		}
		_, _, _, err = m.Prompt(v.Raw)
		switch {
		case v.Error != "" && (err == nil || !strings.Contains(err.Error(), v.Error)):
			t.Errorf("Prompt(%q): err %v; want %q", v.Raw, err, v.Error)
		case v.Error == "" && err != nil:
			t.Errorf("Prompt(%q): %v", v.Raw, err)
		}
	}
}
