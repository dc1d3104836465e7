package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// GPT-2 splits text into pieces with the regular expression
//
//	's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//
// before BPE runs inside each piece. Go's regexp has no lookahead, so nextPiece implements the
// same leftmost-first alternation by hand. \s is Unicode White_Space (unicode.IsSpace), as in
// Python's regex module and Rust's fancy-regex that OpenAI's and Hugging Face's tokenizers use.
// Invalid UTF-8 bytes count as one "other" character each, so they stay inside pieces and
// round-trip through the byte-level vocabulary.

type runeClass uint8

const (
	classEnd runeClass = iota
	classLetter
	classNumber
	classSpace
	classOther
)

func classify(r rune) runeClass {
	switch {
	case r < utf8.RuneSelf:
		return asciiClass[r]
	case unicode.IsLetter(r):
		return classLetter
	case unicode.IsNumber(r):
		return classNumber
	case unicode.IsSpace(r):
		return classSpace
	}
	return classOther
}

var asciiClass = func() (t [utf8.RuneSelf]runeClass) {
	for r := range t {
		switch {
		case unicode.IsLetter(rune(r)):
			t[r] = classLetter
		case unicode.IsNumber(rune(r)):
			t[r] = classNumber
		case unicode.IsSpace(rune(r)):
			t[r] = classSpace
		default:
			t[r] = classOther
		}
	}
	return t
}()

// classAt returns the class and width of the character at s[i:]; classEnd at the end.
func classAt(s string, i int) (runeClass, int) {
	if i >= len(s) {
		return classEnd, 0
	}
	if c := s[i]; c < utf8.RuneSelf {
		return asciiClass[c], 1
	}
	r, w := utf8.DecodeRuneInString(s[i:])
	return classify(r), w
}

// nextPiece returns the end of the pre-token that starts at s[i]; i < len(s).
func nextPiece(s string, i int) int {
	if s[i] == '\'' && i+1 < len(s) {
		switch s[i+1] {
		case 's', 't', 'm', 'd':
			return i + 2
		case 'r', 'v':
			if i+2 < len(s) && s[i+2] == 'e' {
				return i + 3
			}
		case 'l':
			if i+2 < len(s) && s[i+2] == 'l' {
				return i + 3
			}
		}
	}
	cls, w := classAt(s, i)
	start := i
	if s[i] == ' ' {
		// " ?X+": the space joins a following letter, number or other run.
		if next, _ := classAt(s, i+1); next == classLetter || next == classNumber || next == classOther {
			cls = next
			start = i + 1
			w = 0
		}
	}
	if cls != classSpace {
		j := start + w
		for {
			c, cw := classAt(s, j)
			if c != cls {
				return j
			}
			j += cw
		}
	}
	// Whitespace run: "\s+(?!\S)" gives back the last whitespace character when non-space
	// follows (so that " word" keeps its space), "\s+" takes a lone one.
	j, last, n := i, i, 0
	for {
		c, cw := classAt(s, j)
		if c != classSpace {
			if c != classEnd && n > 1 {
				return last
			}
			return j
		}
		last = j
		j += cw
		n++
	}
}
