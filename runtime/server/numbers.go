package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/zclconf/go-cty/cty"
)

// DefaultMaxNumberLen bounds the characters of one number in a request. Parsing a number
// into cty's arbitrary-precision form (pipeline inputs) takes time quadratic in its length —
// a 7-million-digit input took 82 s of CPU — and no model input needs more than a few dozen.
const DefaultMaxNumberLen = 100

// numberTooLong is the error of a number literal beyond the limit.
type numberTooLong struct {
	offset int64
	max    int
}

func (e *numberTooLong) Error() string {
	return fmt.Sprintf("a number of more than %d characters at byte %d (--max-number-length)", e.max, e.offset)
}

// numberScanner passes a JSON body through and fails the read once a number literal (a run of
// digits, signs, points and exponents outside strings) is longer than max: the whole body is
// checked in one pass as it is read, before anything parses it.
type numberScanner struct {
	io.ReadCloser
	max              int
	inString, escape bool
	run              int
	offset           int64
	// drain bounds how much of the rest of the body is read and discarded once the limit
	// trips: a client still writing its body then reads the answer instead of a connection
	// reset. The body's read deadline bounds the time it takes.
	drain int64
}

func (n *numberScanner) Read(p []byte) (int, error) {
	k, err := n.ReadCloser.Read(p)
	for i, c := range p[:k] {
		switch {
		case n.inString:
			switch {
			case n.escape:
				n.escape = false
			case c == '\\':
				n.escape = true
			case c == '"':
				n.inString = false
			}
		case c == '"':
			n.inString, n.run = true, 0
		case '0' <= c && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E':
			if n.run++; n.run > n.max {
				if n.drain > 0 {
					_, _ = io.CopyN(io.Discard, n.ReadCloser, n.drain)
				}
				return i, &numberTooLong{offset: n.offset + int64(i), max: n.max}
			}
		default:
			n.run = 0
		}
	}
	n.offset += int64(k)
	return k, err
}

// numericType reports whether values of ty are numbers, or collections of numbers: types a
// JSON string converts to by parsing it as a number.
func numericType(ty cty.Type) bool {
	if ty.IsCollectionType() {
		return numericType(ty.ElementType())
	}
	return ty.Equals(cty.Number)
}

// checkNumericStrings refuses a string longer than max in a numeric input: cty would parse it
// as a number, at the same quadratic cost as a long number literal.
func checkNumericStrings(name string, raw json.RawMessage, max int) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return nil // malformed: the conversion names it
		}
		if s, ok := tok.(string); ok && len(s) > max {
			return errorf(http.StatusBadRequest, "invalid_input", "input %q: a number of more than %d characters (--max-number-length)", name, max)
		}
	}
}
