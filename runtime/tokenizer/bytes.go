package tokenizer

import "unicode/utf8"

// byteRunes maps each byte to the printable rune GPT-2 uses for it in vocabulary strings
// (bytes_to_unicode in OpenAI's encoder.py): printable Latin-1 bytes stand for themselves, the
// other 68 bytes are shifted to U+0100 and up so that no token string contains whitespace or
// control characters. runeBytes is the inverse.
var (
	byteRunes [256]rune
	runeBytes = make(map[rune]byte, 256)
)

func init() {
	n := 0
	for b := 0; b < 256; b++ {
		printable := (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)
		if printable {
			byteRunes[b] = rune(b)
		} else {
			byteRunes[b] = rune(256 + n)
			n++
		}
		runeBytes[byteRunes[b]] = byte(b)
	}
}

// byteLevel returns the vocabulary spelling of raw bytes.
func byteLevel(b []byte) string {
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = utf8.AppendRune(out, byteRunes[c])
	}
	return string(out)
}

// rawBytes inverts byteLevel. ok is false when s holds a rune outside the byte table, which
// happens for added tokens written in plain text (they decode to their own UTF-8).
func rawBytes(s string) (b []byte, ok bool) {
	b = make([]byte, 0, len(s))
	for _, r := range s {
		c, found := runeBytes[r]
		if !found {
			return nil, false
		}
		b = append(b, c)
	}
	return b, true
}
