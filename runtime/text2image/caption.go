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
// str.lower: "ß" upper-cases to "SS", "İ" lower-cases to "i̇".
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
// spaces. "capital" upper-cases C and "lowercase" lower-cases it (Python's full case mappings);
// otherwise C is kept as typed.
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
			char = k.caseOf(char)
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
			w = strings.ToLower(w)
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

// cutWord removes the keyword w (case-insensitive) and the one space after it from s.
func cutWord(s, w string) (string, bool) {
	if len(s) <= len(w) || !strings.EqualFold(s[:len(w)], w) || s[len(w)] != ' ' {
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
