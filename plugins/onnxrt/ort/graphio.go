package ort

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"

	"google.golang.org/protobuf/encoding/protowire"

	ortgo "github.com/yalue/onnxruntime_go"
)

// scanGraphIO reads the declared inputs and outputs of the ONNX model at path the way ONNX
// Runtime reports them (graph inputs that are not initializers, symbolic or unknown dims as -1)
// without loading it: it walks the protobuf, seeking over node lists and initializer data, so a
// 500 MB model costs a few reads instead of a throwaway session (~1 s for GPT-2 124M).
//
// Only what it needs is decoded: ModelProto.graph (7) → GraphProto.input (11), output (12) and
// the names (8) of initializer (5) TensorProtos. Anything malformed is an error; graphInfo then
// asks ONNX Runtime, whose message is the one worth showing.
func scanGraphIO(path string) (ins, outs []ortgo.InputOutputInfo, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	return scanIO(f, st.Size())
}

// scanIO is scanGraphIO over any seekable source of size bytes.
func scanIO(f io.ReadSeeker, size int64) (ins, outs []ortgo.InputOutputInfo, err error) {
	buf := 64 << 10
	if size < int64(buf) {
		buf = 16 + int(size) // bufio's minimum is 16
	}
	s := &pbStream{f: f, r: bufio.NewReaderSize(f, buf), size: size}
	found := false
	for s.off < s.size {
		num, typ, err := s.tag()
		if err != nil {
			return nil, nil, err
		}
		if num == 7 && typ == protowire.BytesType {
			n, err := s.length()
			if err != nil {
				return nil, nil, err
			}
			if ins, outs, err = s.graph(s.off + n); err != nil {
				return nil, nil, err
			}
			found = true
			continue
		}
		if err := s.skipValue(typ); err != nil {
			return nil, nil, err
		}
	}
	if !found {
		return nil, nil, errors.New("no graph")
	}
	return ins, outs, nil
}

// pbStream reads protobuf fields from a file, seeking over long values.
type pbStream struct {
	f         io.ReadSeeker
	r         *bufio.Reader
	off, size int64
}

func (s *pbStream) varint() (uint64, error) {
	var v uint64
	for shift := uint(0); shift < 64; shift += 7 {
		b, err := s.r.ReadByte()
		if err != nil {
			return 0, fmt.Errorf("offset %d: %w", s.off, io.ErrUnexpectedEOF)
		}
		s.off++
		v |= uint64(b&0x7f) << shift
		if b < 0x80 {
			return v, nil
		}
	}
	return 0, fmt.Errorf("offset %d: varint overflows 64 bits", s.off)
}

func (s *pbStream) tag() (protowire.Number, protowire.Type, error) {
	v, err := s.varint()
	if err != nil {
		return 0, 0, err
	}
	num, typ := protowire.DecodeTag(v)
	if num < protowire.MinValidNumber || num > protowire.MaxValidNumber {
		return 0, 0, fmt.Errorf("offset %d: invalid field number %d", s.off, num)
	}
	return num, typ, nil
}

// length reads a length prefix and checks that the value fits in the file.
func (s *pbStream) length() (int64, error) {
	v, err := s.varint()
	if err != nil {
		return 0, err
	}
	if v > uint64(s.size-s.off) {
		return 0, fmt.Errorf("offset %d: length %d runs past the end of the file", s.off, v)
	}
	return int64(v), nil
}

func (s *pbStream) skip(n int64) error {
	if n <= int64(s.r.Buffered()) {
		s.r.Discard(int(n))
		s.off += n
		return nil
	}
	buffered := int64(s.r.Buffered())
	s.r.Discard(int(buffered))
	if _, err := s.f.Seek(n-buffered, io.SeekCurrent); err != nil {
		return err
	}
	s.r.Reset(s.f)
	s.off += n
	return nil
}

func (s *pbStream) skipValue(typ protowire.Type) error {
	switch typ {
	case protowire.VarintType:
		_, err := s.varint()
		return err
	case protowire.Fixed32Type:
		return s.skipFixed(4)
	case protowire.Fixed64Type:
		return s.skipFixed(8)
	case protowire.BytesType:
		n, err := s.length()
		if err != nil {
			return err
		}
		return s.skip(n)
	}
	return fmt.Errorf("offset %d: unsupported wire type %d", s.off, typ)
}

func (s *pbStream) skipFixed(n int64) error {
	if n > s.size-s.off {
		return fmt.Errorf("offset %d: %w", s.off, io.ErrUnexpectedEOF)
	}
	return s.skip(n)
}

func (s *pbStream) bytes(n int64) ([]byte, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(s.r, b); err != nil {
		return nil, fmt.Errorf("offset %d: %w", s.off, err)
	}
	s.off += n
	return b, nil
}

// graph reads a GraphProto ending at offset end.
func (s *pbStream) graph(end int64) (ins, outs []ortgo.InputOutputInfo, err error) {
	inits := map[string]bool{}
	for s.off < end {
		num, typ, err := s.tag()
		if err != nil {
			return nil, nil, err
		}
		switch {
		case (num == 11 || num == 12) && typ == protowire.BytesType:
			n, err := s.length()
			if err != nil {
				return nil, nil, err
			}
			b, err := s.bytes(n)
			if err != nil {
				return nil, nil, err
			}
			vi, err := valueInfo(b)
			if err != nil {
				return nil, nil, fmt.Errorf("offset %d: %w", s.off, err)
			}
			if num == 11 {
				ins = append(ins, vi)
			} else {
				outs = append(outs, vi)
			}
		case num == 5 && typ == protowire.BytesType:
			n, err := s.length()
			if err != nil {
				return nil, nil, err
			}
			name, err := s.tensorName(s.off + n)
			if err != nil {
				return nil, nil, err
			}
			inits[name] = true
		default:
			if err := s.skipValue(typ); err != nil {
				return nil, nil, err
			}
		}
	}
	if s.off != end {
		return nil, nil, fmt.Errorf("offset %d: graph overruns its length", s.off)
	}
	kept := ins[:0]
	for _, in := range ins {
		if !inits[in.Name] {
			kept = append(kept, in)
		}
	}
	return kept, outs, nil
}

// tensorName reads a TensorProto ending at end and returns its name (field 8).
func (s *pbStream) tensorName(end int64) (string, error) {
	var name string
	for s.off < end {
		num, typ, err := s.tag()
		if err != nil {
			return "", err
		}
		if num == 8 && typ == protowire.BytesType {
			n, err := s.length()
			if err != nil {
				return "", err
			}
			b, err := s.bytes(n)
			if err != nil {
				return "", err
			}
			name = string(b)
			continue
		}
		if err := s.skipValue(typ); err != nil {
			return "", err
		}
	}
	if s.off != end {
		return "", fmt.Errorf("offset %d: initializer overruns its length", s.off)
	}
	return name, nil
}

// fields calls fn for each field of message b; fn gets the raw value of length-delimited fields
// and the number of varint ones.
func fields(b []byte, fn func(num protowire.Number, typ protowire.Type, v uint64, raw []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var v uint64
		var raw []byte
		switch typ {
		case protowire.VarintType:
			v, n = protowire.ConsumeVarint(b)
		case protowire.BytesType:
			raw, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if err := fn(num, typ, v, raw); err != nil {
			return err
		}
	}
	return nil
}

// valueInfo decodes a ValueInfoProto: name (1), type (2) → TypeProto.
func valueInfo(b []byte) (ortgo.InputOutputInfo, error) {
	vi := ortgo.InputOutputInfo{OrtValueType: ortgo.ONNXTypeUnknown, Dimensions: ortgo.Shape{}}
	err := fields(b, func(num protowire.Number, typ protowire.Type, _ uint64, raw []byte) error {
		switch {
		case num == 1 && typ == protowire.BytesType:
			vi.Name = string(raw)
		case num == 2 && typ == protowire.BytesType:
			return typeProto(raw, &vi)
		}
		return nil
	})
	return vi, err
}

// typeProto decodes TypeProto: tensor_type (1) and sparse_tensor_type (8) carry elem_type (1)
// and shape (2); sequence (4), map (5), opaque (7) and optional (9) only set the kind.
func typeProto(b []byte, vi *ortgo.InputOutputInfo) error {
	return fields(b, func(num protowire.Number, typ protowire.Type, _ uint64, raw []byte) error {
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case 1, 8:
			vi.OrtValueType = ortgo.ONNXTypeTensor
			if num == 8 {
				vi.OrtValueType = ortgo.ONNXTypeSparseTensor
			}
			return fields(raw, func(num protowire.Number, typ protowire.Type, v uint64, raw []byte) error {
				switch {
				case num == 1 && typ == protowire.VarintType:
					vi.DataType = ortgo.TensorElementDataType(v)
				case num == 2 && typ == protowire.BytesType:
					return shapeProto(raw, vi)
				}
				return nil
			})
		case 4:
			vi.OrtValueType = ortgo.ONNXTypeSequence
		case 5:
			vi.OrtValueType = ortgo.ONNXTypeMap
		case 7:
			vi.OrtValueType = ortgo.ONNXTypeOpaque
		case 9:
			vi.OrtValueType = ortgo.ONNXTypeOptional
		}
		return nil
	})
}

// shapeProto decodes TensorShapeProto.dim (1) → Dimension: dim_value (1) or -1.
func shapeProto(b []byte, vi *ortgo.InputOutputInfo) error {
	return fields(b, func(num protowire.Number, typ protowire.Type, _ uint64, raw []byte) error {
		if num != 1 || typ != protowire.BytesType {
			return nil
		}
		d := int64(-1)
		err := fields(raw, func(num protowire.Number, typ protowire.Type, v uint64, _ []byte) error {
			if num == 1 && typ == protowire.VarintType {
				d = int64(v)
			}
			return nil
		})
		vi.Dimensions = append(vi.Dimensions, d)
		return err
	})
}
