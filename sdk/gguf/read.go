package gguf

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"reflect"
	"strings"
)

// File is a parsed GGUF file held in memory.
type File struct {
	Version    uint32
	KV         []KV
	Tensors    []TensorInfo
	Alignment  uint64
	DataOffset uint64 // start of the data section in the file
	data       []byte
	byName     map[string]int
}

// ReadFile reads and parses path.
func ReadFile(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	f, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// Parse parses a whole GGUF file. Every count and length is checked against the bytes that remain,
// so a malformed file costs at most its own size; errors name the byte offset and the field.
func Parse(data []byte) (*File, error) {
	d := &dec{b: data}
	if string(d.bytes(4, "magic")) != Magic {
		return nil, d.fail(fmt.Errorf("%w: magic is not %q", ErrFormat, Magic))
	}
	f := &File{Version: d.u32("version"), Alignment: DefaultAlignment, data: data, byName: map[string]int{}}
	if d.err == nil && f.Version != Version {
		return nil, fmt.Errorf("%w: version %d (want %d)", ErrUnsupported, f.Version, Version)
	}
	nt := d.count("tensor_count", 8+4+8+4+8)
	nkv := d.count("kv_count", 8+4)
	for i := uint64(0); i < nkv && d.err == nil; i++ {
		key := d.str("key")
		t := ValueType(d.u32("value type of " + key))
		v := d.value(t, key, 0)
		if d.err != nil {
			break
		}
		if key == "general.alignment" {
			a, ok := v.(uint32)
			if !ok || a == 0 || a&(a-1) != 0 {
				return nil, fmt.Errorf("%w: general.alignment %v is not a power of two uint32", ErrFormat, v)
			}
			f.Alignment = uint64(a)
		}
		f.KV = append(f.KV, KV{Key: key, Value: v})
	}
	for i := uint64(0); i < nt && d.err == nil; i++ {
		ti := TensorInfo{Name: d.str("tensor name")}
		nd := d.u32("n_dims of " + ti.Name)
		if d.err == nil && (nd == 0 || nd > 4) {
			return nil, fmt.Errorf("%w: tensor %q has %d dimensions", ErrFormat, ti.Name, nd)
		}
		for j := uint32(0); j < nd; j++ {
			ti.Dims = append(ti.Dims, d.u64("dims of "+ti.Name))
		}
		ti.Type = TensorType(d.u32("type of " + ti.Name))
		ti.Offset = d.u64("offset of " + ti.Name)
		if d.err != nil {
			break
		}
		if _, dup := f.byName[ti.Name]; dup {
			return nil, fmt.Errorf("%w: tensor %q twice", ErrFormat, ti.Name)
		}
		f.byName[ti.Name] = len(f.Tensors)
		f.Tensors = append(f.Tensors, ti)
	}
	if d.err != nil {
		return nil, d.err
	}
	f.DataOffset = alignUp(uint64(d.off), f.Alignment)
	if f.DataOffset > uint64(len(data)) && len(f.Tensors) > 0 {
		return nil, fmt.Errorf("%w: data section starts at %d past the end (%d bytes)", ErrFormat, f.DataOffset, len(data))
	}
	avail := uint64(len(data)) - min(f.DataOffset, uint64(len(data)))
	for _, ti := range f.Tensors {
		n, err := ti.Bytes()
		if err != nil {
			// Unknown types are kept (their data is not reachable); malformed known ones are not.
			if ti.Type == F32 || ti.Type == F16 || ti.Type == Q8_0 {
				return nil, fmt.Errorf("%w: %w", ErrFormat, err)
			}
			continue
		}
		if ti.Offset%f.Alignment != 0 || ti.Offset > avail || n > avail-ti.Offset {
			return nil, fmt.Errorf("%w: tensor %q: %d bytes at offset %d do not fit the %d bytes of data (alignment %d)", ErrFormat, ti.Name, n, ti.Offset, avail, f.Alignment)
		}
	}
	return f, nil
}

// Get returns the value of key.
func (f *File) Get(key string) (any, bool) {
	for _, kv := range f.KV {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return nil, false
}

// Tensor returns the info and raw bytes of the named tensor.
func (f *File) Tensor(name string) (TensorInfo, []byte, error) {
	i, ok := f.byName[name]
	if !ok {
		return TensorInfo{}, nil, fmt.Errorf("gguf: no tensor %q", name)
	}
	ti := f.Tensors[i]
	n, err := ti.Bytes()
	if err != nil {
		return ti, nil, err
	}
	start := f.DataOffset + ti.Offset
	return ti, f.data[start : start+n], nil
}

// Float32 decodes the named tensor (F32, F16 or Q8_0) to float32, in file order.
func (f *File) Float32(name string) ([]float32, TensorInfo, error) {
	ti, raw, err := f.Tensor(name)
	if err != nil {
		return nil, ti, err
	}
	out := make([]float32, ti.Elements())
	switch ti.Type {
	case F32:
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
	case F16:
		for i := range out {
			out[i] = f16ToF32(binary.LittleEndian.Uint16(raw[2*i:]))
		}
	case Q8_0:
		DequantizeQ8_0(out, raw)
	default:
		return nil, ti, fmt.Errorf("%w: tensor %q has type %s", ErrUnsupported, name, ti.Type)
	}
	return out, ti, nil
}

// dec reads little-endian values from b, remembering the first error with its offset.
type dec struct {
	b   []byte
	off int
	err error
}

func (d *dec) fail(err error) error {
	if d.err == nil {
		d.err = err
	}
	return d.err
}

func (d *dec) bytes(n uint64, what string) []byte {
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)-d.off) {
		d.err = fmt.Errorf("%w: %s: %d bytes at offset %d past the end (%d bytes)", ErrFormat, what, n, d.off, len(d.b))
		return nil
	}
	p := d.b[d.off : d.off+int(n)]
	d.off += int(n)
	return p
}

func (d *dec) u8(what string) uint8 {
	if p := d.bytes(1, what); p != nil {
		return p[0]
	}
	return 0
}

func (d *dec) u16(what string) uint16 {
	if p := d.bytes(2, what); p != nil {
		return binary.LittleEndian.Uint16(p)
	}
	return 0
}

func (d *dec) u32(what string) uint32 {
	if p := d.bytes(4, what); p != nil {
		return binary.LittleEndian.Uint32(p)
	}
	return 0
}

func (d *dec) u64(what string) uint64 {
	if p := d.bytes(8, what); p != nil {
		return binary.LittleEndian.Uint64(p)
	}
	return 0
}

// count reads a uint64 count of items of at least minSize bytes each and refuses one the rest of
// the file cannot hold.
func (d *dec) count(what string, minSize uint64) uint64 {
	n := d.u64(what)
	if d.err == nil && n > uint64(len(d.b)-d.off)/minSize {
		d.err = fmt.Errorf("%w: %s %d at offset %d: the remaining %d bytes cannot hold that many", ErrFormat, what, n, d.off-8, len(d.b)-d.off)
		return 0
	}
	return n
}

func (d *dec) str(what string) string {
	n := d.u64(what + " length")
	return string(d.bytes(n, what))
}

// maxArrayDepth bounds nested arrays (gguf.h allows them; llama.cpp writes none).
const maxArrayDepth = 2

func (d *dec) value(t ValueType, key string, depth int) any {
	if d.err != nil {
		return nil
	}
	switch t {
	case TypeUint8:
		return d.u8(key)
	case TypeInt8:
		return int8(d.u8(key))
	case TypeUint16:
		return d.u16(key)
	case TypeInt16:
		return int16(d.u16(key))
	case TypeUint32:
		return d.u32(key)
	case TypeInt32:
		return int32(d.u32(key))
	case TypeFloat32:
		return math.Float32frombits(d.u32(key))
	case TypeBool:
		b := d.u8(key)
		if d.err == nil && b > 1 {
			d.fail(fmt.Errorf("%w: %s: bool byte %d at offset %d", ErrFormat, key, b, d.off-1))
		}
		return b == 1
	case TypeString:
		return d.str(key)
	case TypeUint64:
		return d.u64(key)
	case TypeInt64:
		return int64(d.u64(key))
	case TypeFloat64:
		return math.Float64frombits(d.u64(key))
	case TypeArray:
		if depth >= maxArrayDepth {
			d.fail(fmt.Errorf("%w: %s: arrays nested deeper than %d", ErrUnsupported, key, maxArrayDepth))
			return nil
		}
		et := ValueType(d.u32(key + " element type"))
		if d.err == nil && !et.valid() {
			d.fail(fmt.Errorf("%w: %s: array element type %d", ErrFormat, key, et))
			return nil
		}
		minSize := uint64(et.size())
		if minSize == 0 {
			minSize = 8 // a string's length, or an array's type and count
		}
		n := d.count(key+" array length", minSize)
		return d.array(et, n, key, depth)
	}
	d.fail(fmt.Errorf("%w: %s: value type %d at offset %d", ErrFormat, key, t, d.off-4))
	return nil
}

func (d *dec) array(et ValueType, n uint64, key string, depth int) any {
	var vals any
	switch et {
	case TypeString:
		s := make([]string, 0, n)
		for i := uint64(0); i < n && d.err == nil; i++ {
			s = append(s, d.str(key))
		}
		vals = s
	case TypeArray:
		s := make([]any, 0, n)
		for i := uint64(0); i < n && d.err == nil; i++ {
			s = append(s, d.value(TypeArray, key, depth+1))
		}
		vals = s
	default:
		vals = fixedArray(d, et, n, key)
	}
	return Array{Elem: et, Values: vals}
}

// goTypes are the Go element types of fixed-size metadata arrays.
var goTypes = map[ValueType]reflect.Type{
	TypeUint8: reflect.TypeFor[uint8](), TypeInt8: reflect.TypeFor[int8](), TypeUint16: reflect.TypeFor[uint16](),
	TypeInt16: reflect.TypeFor[int16](), TypeUint32: reflect.TypeFor[uint32](), TypeInt32: reflect.TypeFor[int32](),
	TypeFloat32: reflect.TypeFor[float32](), TypeBool: reflect.TypeFor[bool](), TypeUint64: reflect.TypeFor[uint64](),
	TypeInt64: reflect.TypeFor[int64](), TypeFloat64: reflect.TypeFor[float64](),
}

// fixedArray reads n values of the fixed-size type et into a slice of its Go type.
func fixedArray(d *dec, et ValueType, n uint64, key string) any {
	out := reflect.MakeSlice(reflect.SliceOf(goTypes[et]), 0, int(n))
	for i := uint64(0); i < n && d.err == nil; i++ {
		out = reflect.Append(out, reflect.ValueOf(d.value(et, key, 0)))
	}
	return out.Interface()
}

// String summarizes the file: version, counts, and the keys (for errors and inspection).
func (f *File) String() string {
	keys := make([]string, len(f.KV))
	for i, kv := range f.KV {
		keys[i] = kv.Key
	}
	return fmt.Sprintf("GGUF v%d: %d tensors, keys %s", f.Version, len(f.Tensors), strings.Join(keys, ", "))
}
