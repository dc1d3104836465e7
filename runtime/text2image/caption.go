package text2image

import (
	"errors"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/language"
)

// ErrEmptyCaption is returned for a caption that is empty after trimming.
var ErrEmptyCaption = errors.New("text2image: the caption is empty")

// kinds are the caption kinds of the grammar, longest first so that "capital letter" is not
// read as "letter"; caseOf says how the character is changed.
// The case mappings are Unicode's full ones (SpecialCasing), as Python's str.upper and
// str.lower, applied only when the result is still one character, as the training script
// does: "ß" stays "ß" (its capital is "SS"), "İ" stays "İ".
var kinds = []struct {
	words  string
	caseOf func(string) string
}{
	{"capital letter", cases.Upper(language.Und).String},
	{"lowercase letter", cases.Lower(language.Und).String},
	{"greek letter", nil},
	{"letter", nil},
	{"digit", nil},
	{"character", nil},
}

// styles are the style words a caption may end with.
var styles = []string{"bold", "light", "italic", "serif", "sans", "mono", "condensed"}

// NormalizeCaption returns the canonical form of a caption (docs/text2image.md):
//
//	the KIND C[, STYLE...]
//
// with case-insensitive keywords and any runs of spaces, becomes "the " + kind + " " + C, then
// ", " and the style words in the order typed, lower-cased, de-duplicated, joined by single
// spaces. "capital" upper-cases C and "lowercase" lower-cases it when the result is one
// character (Python's full case mappings); otherwise C is kept as typed.
// A caption outside the grammar is only trimmed and its whitespace runs collapsed to one space.
// An empty caption is ErrEmptyCaption.
func NormalizeCaption(s string) (string, error) {
	words := strings.Fields(s)
	if len(words) == 0 {
		return "", ErrEmptyCaption
	}
	collapsed := strings.Join(words, " ")
	if c, ok := canonical(collapsed); ok {
		return c, nil
	}
	return collapsed, nil
}

// canonical parses s (whitespace already collapsed) by the grammar.
func canonical(s string) (string, bool) {
	rest, ok := cutWord(s, "the")
	if !ok {
		return "", false
	}
	for _, k := range kinds {
		r, ok := cutWords(rest, k.words)
		if !ok {
			continue
		}
		c, size := utf8.DecodeRuneInString(r)
		if size == 0 || c == utf8.RuneError || unicode.IsSpace(c) {
			return "", false
		}
		char := string(c)
		if k.caseOf != nil {
			if m := k.caseOf(char); utf8.RuneCountInString(m) == 1 {
				char = m
			}
		}
		out := "the " + k.words + " " + char
		tail := strings.TrimLeft(r[size:], " ")
		if tail == "" {
			return out, true
		}
		if tail[0] != ',' || (size < len(r) && r[size] != ' ' && r[size] != ',') {
			return "", false
		}
		var typed []string
		for _, w := range strings.FieldsFunc(tail, func(r rune) bool { return r == ',' || unicode.IsSpace(r) }) {
			w = asciiLower(w)
			if !slices.Contains(styles, w) {
				return "", false
			}
			if !slices.Contains(typed, w) {
				typed = append(typed, w)
			}
		}
		if len(typed) == 0 {
			return "", false
		}
		return out + ", " + strings.Join(typed, " "), true
	}
	return "", false
}

// cutWord removes the keyword w (ASCII case-insensitive, as the training script: "ſ" is not
// "s") and the one space after it from s.
func cutWord(s, w string) (string, bool) {
	if len(s) <= len(w) || !asciiEqualFold(s[:len(w)], w) || s[len(w)] != ' ' {
		return "", false
	}
	return s[len(w)+1:], true
}

// cutWords removes the space-separated keywords ws from s.
func cutWords(s, ws string) (string, bool) {
	for _, w := range strings.Split(ws, " ") {
		var ok bool
		if s, ok = cutWord(s, w); !ok {
			return "", false
		}
	}
	return s, true
}

// asciiEqualFold reports whether a and b are equal when ASCII letters are lower-cased.
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// asciiLower lower-cases the ASCII letters of s.
func asciiLower(s string) string {
	return strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}, s)
}
