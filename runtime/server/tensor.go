package server

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"

	"github.com/modelrt/modelrt/sdk"
	"github.com/modelrt/modelrt/sdk/safetensors"
)

// v2Tensor is a tensor of the Open Inference Protocol's JSON form: data row-major, flat or
// nested (the nesting is ignored; the shape is authoritative).
// As an output in binary (v2response.go), it has no data, and binary_data_size in parameters.
type v2Tensor struct {
	Name       string          `json:"name"`
	Shape      []int64         `json:"shape"`
	Datatype   string          `json:"datatype"`
	Parameters map[string]any  `json:"parameters,omitempty"`
	Data       json.RawMessage `json:"data,omitempty"`
}

// v2Types maps the protocol's datatypes to the wire dtypes modelrt's backends take.
var v2Types = map[string]sdk.DType{
	"FP32": sdk.Float32, "FP16": sdk.Float16, "BF16": sdk.BFloat16, "INT64": sdk.Int64,
	"INT32": sdk.Int32, "UINT8": sdk.Uint8, "BOOL": sdk.Bool,
}

func v2Type(d sdk.DType) string {
	for k, v := range v2Types {
		if v == d {
			return k
		}
	}
	return string(d)
}

// badInput is a 400 about one input tensor.
func badInput(name, format string, args ...any) error {
	return errorf(http.StatusBadRequest, "invalid_tensor", "input %q: %s", name, fmt.Sprintf(format, args...))
}

// toTensor converts one v2 input to a backend tensor. Every element is checked: a number of
// the wrong kind, an integer out of its type's range, a count that does not match the shape,
// and a float that is NaN or infinite are all 400s. Non-finite floats are refused because no
// model here means anything by them and they poison every output they reach.
func (t *v2Tensor) toTensor() (*sdk.Tensor, error) {
	if t.Name == "" {
		return nil, badInput("", "name: required")
	}
	dt, ok := v2Types[t.Datatype]
	if !ok || dt == sdk.Float16 || dt == sdk.BFloat16 {
		return nil, badInput(t.Name, "datatype %q: want FP32, INT64, INT32, UINT8 or BOOL", t.Datatype)
	}
	if t.Shape == nil {
		return nil, badInput(t.Name, "shape: required")
	}
	n, err := sdk.NumElements(t.Shape, dt.Size())
	if err != nil {
		return nil, badInput(t.Name, "shape %v: %v", t.Shape, err)
	}
	elems, err := parseData(t.Data)
	if err != nil {
		return nil, badInput(t.Name, "data: %v", err)
	}
	if int64(len(elems)) != n {
		return nil, badInput(t.Name, "shape %v needs %d elements, data has %d", t.Shape, n, len(elems))
	}
	out := &sdk.Tensor{DType: dt, Shape: t.Shape, Data: make([]byte, int(n)*dt.Size())}
	for i, e := range elems {
		if err := putElement(out, i, e); err != nil {
			return nil, badInput(t.Name, "element %d: %v", i, err)
		}
	}
	return out, nil
}

func putElement(t *sdk.Tensor, i int, e string) error {
	switch t.DType {
	case sdk.Float32:
		f, err := strconv.ParseFloat(e, 32)
		if err != nil && !isRangeErr(err) {
			return fmt.Errorf("%q is not a number", e)
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("%s is not finite: tensors must hold finite numbers", e)
		}
		binary.LittleEndian.PutUint32(t.Data[i*4:], math.Float32bits(float32(f)))
	case sdk.Int64, sdk.Int32, sdk.Uint8:
		bits := map[sdk.DType]int{sdk.Int64: 64, sdk.Int32: 32, sdk.Uint8: 8}[t.DType]
		var v int64
		var err error
		if t.DType == sdk.Uint8 {
			var u uint64
			u, err = strconv.ParseUint(e, 10, bits)
			v = int64(u)
		} else {
			v, err = strconv.ParseInt(e, 10, bits)
		}
		if err != nil {
			return fmt.Errorf("%q is not a %s integer", e, v2Type(t.DType))
		}
		switch t.DType {
		case sdk.Int64:
			binary.LittleEndian.PutUint64(t.Data[i*8:], uint64(v))
		case sdk.Int32:
			binary.LittleEndian.PutUint32(t.Data[i*4:], uint32(v))
		default:
			t.Data[i] = byte(v)
		}
	case sdk.Bool:
		switch e {
		case "true":
			t.Data[i] = 1
		case "false":
			t.Data[i] = 0
		default:
			return fmt.Errorf("%q is not a boolean", e)
		}
	}
	return nil
}

func isRangeErr(err error) bool {
	ne, ok := err.(*strconv.NumError)
	return ok && ne.Err == strconv.ErrRange
}

// maxDataDepth bounds the nesting of a data array (sdk.MaxRank dimensions).
const maxDataDepth = sdk.MaxRank

// parseData flattens a JSON array of scalars, nested or not, into the scalars' texts:
// numbers and booleans as written, strings without their quotes (so that "NaN" and
// "Infinity", which JSON cannot write as numbers, reach the element check and are named
// there). Objects, null, escaped strings and nesting beyond maxDataDepth are errors.
// raw must be valid JSON (encoding/json has checked it).
func parseData(raw json.RawMessage) ([]string, error) {
	var out []string
	depth, i := 0, 0
	skip := func() {
		for i < len(raw) && (raw[i] == ' ' || raw[i] == '\t' || raw[i] == '\n' || raw[i] == '\r' || raw[i] == ',') {
			i++
		}
	}
	skip()
	if i == len(raw) {
		return nil, fmt.Errorf("required")
	}
	if raw[i] != '[' {
		return nil, fmt.Errorf("want an array")
	}
	for skip(); i < len(raw); skip() {
		switch c := raw[i]; {
		case c == '[':
			depth++
			if depth > maxDataDepth {
				return nil, fmt.Errorf("nested deeper than %d", maxDataDepth)
			}
			i++
		case c == ']':
			depth--
			i++
			if depth == 0 {
				if skip(); i != len(raw) {
					return nil, fmt.Errorf("trailing data after the array")
				}
				return out, nil
			}
		case c == '"':
			j := i + 1
			for j < len(raw) && raw[j] != '"' {
				if raw[j] == '\\' {
					return nil, fmt.Errorf("element %d: escaped strings are not scalars", len(out))
				}
				j++
			}
			if j == len(raw) {
				return nil, fmt.Errorf("unterminated string")
			}
			out = append(out, string(raw[i+1:j]))
			i = j + 1
		case c == '{' || c == '}' || c == ':':
			return nil, fmt.Errorf("element %d: objects are not scalars", len(out))
		default:
			j := i
			for j < len(raw) && raw[j] != ',' && raw[j] != ']' && raw[j] != ' ' && raw[j] != '\n' && raw[j] != '\t' && raw[j] != '\r' {
				j++
			}
			tok := string(raw[i:j])
			if tok == "null" {
				return nil, fmt.Errorf("element %d is null", len(out))
			}
			out = append(out, tok)
			i = j
		}
		if depth == 0 {
			return nil, fmt.Errorf("want an array")
		}
	}
	return nil, fmt.Errorf("unterminated array")
}

// tensorJSON is an output tensor in the v2 form; data is written by appendData.
type tensorJSON struct {
	Name     string          `json:"name,omitempty"`
	Shape    []int64         `json:"shape"`
	Datatype string          `json:"datatype"`
	Data     json.RawMessage `json:"data"`
}

func fromTensor(name string, t *sdk.Tensor) (tensorJSON, error) {
	if err := t.Validate(); err != nil {
		return tensorJSON{}, fmt.Errorf("output %q: %w", name, err)
	}
	data, err := appendData(nil, t)
	if err != nil {
		return tensorJSON{}, fmt.Errorf("output %q: %w", name, err)
	}
	shape := t.Shape
	if shape == nil {
		shape = []int64{}
	}
	return tensorJSON{Name: name, Shape: shape, Datatype: v2Type(t.DType), Data: data}, nil
}

// appendData writes a tensor's elements as a flat JSON array. Non-finite floats, which JSON
// has no numbers for, are written as the strings "NaN", "Infinity" and "-Infinity" (the forms
// the input side reads). Half-precision outputs are widened to their float values.
func appendData(b []byte, t *sdk.Tensor) ([]byte, error) {
	return appendDataLimit(b, t, math.MaxInt)
}

// appendDataLimit is appendData that gives up with errResponseTooLarge once the array has
// grown beyond limit bytes.
func appendDataLimit(b []byte, t *sdk.Tensor, limit int) ([]byte, error) {
	start := len(b)
	b = append(b, '[')
	n := t.Len()
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		if i%1024 == 0 && len(b)-start > limit {
			return nil, errResponseTooLarge
		}
		switch t.DType {
		case sdk.Float32:
			b = appendFloat(b, float64(math.Float32frombits(binary.LittleEndian.Uint32(t.Data[i*4:]))), 32)
		case sdk.Float16:
			b = appendFloat(b, float64(safetensors.F16ToF32(binary.LittleEndian.Uint16(t.Data[i*2:]))), 32)
		case sdk.BFloat16:
			b = appendFloat(b, float64(safetensors.BF16ToF32(binary.LittleEndian.Uint16(t.Data[i*2:]))), 32)
		case sdk.Int64:
			b = strconv.AppendInt(b, int64(binary.LittleEndian.Uint64(t.Data[i*8:])), 10)
		case sdk.Int32:
			b = strconv.AppendInt(b, int64(int32(binary.LittleEndian.Uint32(t.Data[i*4:]))), 10)
		case sdk.Uint8:
			b = strconv.AppendInt(b, int64(t.Data[i]), 10)
		case sdk.Bool:
			b = strconv.AppendBool(b, t.Data[i] != 0)
		default:
			return nil, fmt.Errorf("dtype %q has no JSON form", t.DType)
		}
	}
	if len(b)-start >= limit {
		return nil, errResponseTooLarge
	}
	return append(b, ']'), nil
}

func appendFloat(b []byte, f float64, bits int) []byte {
	switch {
	case math.IsNaN(f):
		return append(b, `"NaN"`...)
	case math.IsInf(f, 1):
		return append(b, `"Infinity"`...)
	case math.IsInf(f, -1):
		return append(b, `"-Infinity"`...)
	}
	return strconv.AppendFloat(b, f, 'g', -1, bits)
}
