// Package safetensors reads and writes the safetensors tensor file format
// (https://huggingface.co/docs/safetensors): an 8-byte little-endian header length n, n bytes of
// JSON mapping tensor names to {dtype, shape, data_offsets}, then the raw little-endian data.
//
// The reader validates the header strictly before any tensor is touched: header size cap, JSON
// syntax, no duplicate names, known dtype, non-negative shape, dtype size × elements == byte
// length, and offsets that tile the data section exactly (sorted by offset, no gaps, no
// overlaps, nothing past the end). Every error names the file and, where there is one, the
// tensor.
package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
)

// Sentinel errors; returned errors wrap one of them.
var (
	// ErrInvalid marks a malformed file or header.
	ErrInvalid = errors.New("safetensors: invalid file")
	// ErrNotFound marks a tensor name absent from the file.
	ErrNotFound = errors.New("safetensors: tensor not found")
	// ErrDType marks a conversion the tensor's dtype does not support.
	ErrDType = errors.New("safetensors: unsupported dtype")
)

// MaxHeaderSize caps the JSON header length (the reference implementation's limit), so that a
// corrupt length cannot make the reader allocate or map gigabytes.
const MaxHeaderSize = 100 << 20

// DType is a safetensors element type name as it appears in the header ("F32", "BF16", ...).
type DType string

// Element types. All of them are accepted by the header validator; conversion to float32 is
// provided for F32, F16 and BF16 (and F64), to int64 for the integer types.
const (
	BOOL    DType = "BOOL"
	U8      DType = "U8"
	I8      DType = "I8"
	F8E5M2  DType = "F8_E5M2"
	F8E4M3  DType = "F8_E4M3"
	I16     DType = "I16"
	U16     DType = "U16"
	F16     DType = "F16"
	BF16    DType = "BF16"
	I32     DType = "I32"
	U32     DType = "U32"
	F32     DType = "F32"
	F64     DType = "F64"
	I64     DType = "I64"
	U64     DType = "U64"
	metaKey       = "__metadata__"
)

var dtypeSizes = map[DType]int{
	BOOL: 1, U8: 1, I8: 1, F8E5M2: 1, F8E4M3: 1,
	I16: 2, U16: 2, F16: 2, BF16: 2,
	I32: 4, U32: 4, F32: 4,
	F64: 8, I64: 8, U64: 8,
}

// Size returns the size in bytes of one element, or 0 for an unknown dtype.
func (d DType) Size() int { return dtypeSizes[d] }

// TensorInfo describes one tensor of a file.
type TensorInfo struct {
	Name  string
	DType DType
	Shape []int
	// Begin and End are byte offsets of the tensor's data relative to the start of the data
	// section (just after the header).
	Begin, End int64
}

// NumElements returns the product of the shape (1 for a scalar).
func (ti TensorInfo) NumElements() int {
	n := 1
	for _, d := range ti.Shape {
		n *= d
	}
	return n
}

// Header is a parsed and validated safetensors header.
type Header struct {
	// Tensors in data order (ascending Begin).
	Tensors []TensorInfo
	// Metadata is the optional "__metadata__" string map (nil when absent).
	Metadata map[string]string
	// DataStart is the file offset of the data section: 8 + header length.
	DataStart int64
}

type rawEntry struct {
	DType       DType   `json:"dtype"`
	Shape       []int64 `json:"shape"`
	DataOffsets []int64 `json:"data_offsets"`
}

// ParseHeader parses and validates the header of a safetensors file of size bytes whose first
// bytes are in prefix (prefix must hold at least 8 bytes plus the header, or the header is
// reported as truncated). The data section is checked to be exactly size-DataStart bytes long.
// Errors wrap ErrInvalid; they do not name the file (callers add it).
func ParseHeader(prefix []byte, size int64) (*Header, error) {
	if size < 8 || len(prefix) < 8 {
		return nil, fmt.Errorf("%w: file of %d bytes has no 8-byte header length", ErrInvalid, size)
	}
	n := binary.LittleEndian.Uint64(prefix[:8])
	if n > MaxHeaderSize {
		return nil, fmt.Errorf("%w: header length %d exceeds the %d-byte cap", ErrInvalid, n, MaxHeaderSize)
	}
	if int64(n) > size-8 {
		return nil, fmt.Errorf("%w: header length %d runs past the end of the %d-byte file", ErrInvalid, n, size)
	}
	if uint64(len(prefix)-8) < n {
		return nil, fmt.Errorf("%w: header truncated: have %d of %d bytes", ErrInvalid, len(prefix)-8, n)
	}
	js := prefix[8 : 8+n]
	if len(bytes.TrimSpace(js)) == 0 || bytes.TrimLeft(js, " \t\r\n")[0] != '{' {
		return nil, fmt.Errorf("%w: header is not a JSON object", ErrInvalid)
	}
	h := &Header{DataStart: 8 + int64(n)}
	dataLen := size - h.DataStart

	dec := json.NewDecoder(bytes.NewReader(js))
	if _, err := dec.Token(); err != nil { // '{'
		return nil, fmt.Errorf("%w: header JSON: %v", ErrInvalid, err)
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%w: header JSON: %v", ErrInvalid, err)
		}
		name, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("%w: header JSON: key %v is not a string", ErrInvalid, tok)
		}
		if seen[name] {
			return nil, fmt.Errorf("%w: duplicate entry %q", ErrInvalid, name)
		}
		seen[name] = true
		if name == metaKey {
			var md map[string]string
			if err := dec.Decode(&md); err != nil {
				return nil, fmt.Errorf("%w: %s: want a map of strings: %v", ErrInvalid, metaKey, err)
			}
			h.Metadata = md
			continue
		}
		var e rawEntry
		if err := dec.Decode(&e); err != nil {
			return nil, fmt.Errorf("%w: tensor %q: %v", ErrInvalid, name, err)
		}
		ti, err := e.validate(name)
		if err != nil {
			return nil, err
		}
		h.Tensors = append(h.Tensors, ti)
	}
	if _, err := dec.Token(); err != nil { // '}'
		return nil, fmt.Errorf("%w: header JSON: %v", ErrInvalid, err)
	}
	if rest := js[dec.InputOffset():]; len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%w: trailing bytes after the header JSON object", ErrInvalid)
	}

	sort.Slice(h.Tensors, func(i, j int) bool {
		a, b := h.Tensors[i], h.Tensors[j]
		if a.Begin != b.Begin {
			return a.Begin < b.Begin
		}
		return a.End < b.End
	})
	var pos int64
	for i, ti := range h.Tensors {
		if ti.Begin < pos {
			return nil, fmt.Errorf("%w: tensor %q: data_offsets [%d,%d] overlap tensor %q", ErrInvalid, ti.Name, ti.Begin, ti.End, h.Tensors[i-1].Name)
		}
		if ti.Begin > pos {
			return nil, fmt.Errorf("%w: tensor %q: data_offsets [%d,%d] leave a gap after byte %d", ErrInvalid, ti.Name, ti.Begin, ti.End, pos)
		}
		if ti.End > dataLen {
			return nil, fmt.Errorf("%w: tensor %q: data_offsets [%d,%d] run past the %d-byte data section (file truncated?)", ErrInvalid, ti.Name, ti.Begin, ti.End, dataLen)
		}
		pos = ti.End
	}
	if pos != dataLen {
		return nil, fmt.Errorf("%w: tensors cover %d bytes but the data section holds %d", ErrInvalid, pos, dataLen)
	}
	return h, nil
}

func (e rawEntry) validate(name string) (TensorInfo, error) {
	bad := func(format string, args ...any) (TensorInfo, error) {
		return TensorInfo{}, fmt.Errorf("%w: tensor %q: %s", ErrInvalid, name, fmt.Sprintf(format, args...))
	}
	size := e.DType.Size()
	if size == 0 {
		return bad("unknown dtype %q", string(e.DType))
	}
	if e.Shape == nil {
		return bad("missing shape")
	}
	if len(e.DataOffsets) != 2 {
		return bad("data_offsets must hold 2 numbers, got %d", len(e.DataOffsets))
	}
	begin, end := e.DataOffsets[0], e.DataOffsets[1]
	if begin < 0 || end < begin {
		return bad("invalid data_offsets [%d,%d]", begin, end)
	}
	shape := make([]int, len(e.Shape))
	nbytes := int64(size)
	for i, d := range e.Shape {
		if d < 0 {
			return bad("negative dimension %d in shape %v", d, e.Shape)
		}
		if d != 0 && nbytes > math.MaxInt64/d {
			return bad("shape %v overflows", e.Shape)
		}
		nbytes *= d
		shape[i] = int(d)
	}
	if end-begin != nbytes {
		return bad("%s%v needs %d bytes but data_offsets [%d,%d] span %d", e.DType, e.Shape, nbytes, begin, end, end-begin)
	}
	return TensorInfo{Name: name, DType: e.DType, Shape: shape, Begin: begin, End: end}, nil
}

// shapeString formats a shape as (2,3,4).
func shapeString(shape []int) string {
	parts := make([]string, len(shape))
	for i, d := range shape {
		parts[i] = fmt.Sprint(d)
	}
	return "(" + strings.Join(parts, ",") + ")"
}

// sortedNames returns the tensor names in lexical order.
func (h *Header) sortedNames() []string {
	names := make([]string, len(h.Tensors))
	for i, t := range h.Tensors {
		names[i] = t.Name
	}
	slices.Sort(names)
	return names
}
