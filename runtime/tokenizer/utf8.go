package tokenizer

import "unicode/utf8"

// appendValidUTF8 appends b to dst with every maximal invalid subsequence replaced by one
// U+FFFD — the Unicode "substitution of maximal subparts" practice that Python's UTF-8 decoder
// follows (b"\xe2\x82A" → "\ufffdA", where Go's range loop would give two U+FFFD). With atEOF
// false a trailing sequence that is a valid but unfinished prefix is left out; consumed says
// how many bytes of b were used.
func appendValidUTF8(dst, b []byte, atEOF bool) (out []byte, consumed int) {
	i := 0
	for i < len(b) {
		c := b[i]
		if c < utf8.RuneSelf {
			dst = append(dst, c)
			i++
			continue
		}
		need, lo, hi := leadInfo(c)
		if need == 0 {
			dst = append(dst, "\uFFFD"...)
			i++
			continue
		}
		// Count continuation bytes that keep the sequence valid; the second byte's range
		// depends on the lead (Unicode Table 3-7), later ones are always 80..BF.
		j := i + 1
		for k := 0; k < need && j < len(b); k++ {
			if b[j] < lo || b[j] > hi {
				break
			}
			lo, hi = 0x80, 0xBF
			j++
		}
		switch {
		case j-i == need+1:
			dst = append(dst, b[i:j]...)
		case j == len(b) && !atEOF:
			return dst, i
		default:
			dst = append(dst, "\uFFFD"...)
		}
		i = j
	}
	return dst, i
}

// leadInfo returns how many continuation bytes the lead byte c needs and the valid range of
// the first one; need 0 means c cannot start a character.
func leadInfo(c byte) (need int, lo, hi byte) {
	switch {
	case c >= 0xC2 && c <= 0xDF:
		return 1, 0x80, 0xBF
	case c == 0xE0:
		return 2, 0xA0, 0xBF
	case c == 0xED:
		return 2, 0x80, 0x9F
	case c >= 0xE1 && c <= 0xEF:
		return 2, 0x80, 0xBF
	case c == 0xF0:
		return 3, 0x90, 0xBF
	case c >= 0xF1 && c <= 0xF3:
		return 3, 0x80, 0xBF
	case c == 0xF4:
		return 3, 0x80, 0x8F
	}
	return 0, 0, 0
}
