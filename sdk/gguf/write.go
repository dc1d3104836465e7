package gguf

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"reflect"
)

// Tensor is a tensor to write: its info (Offset is computed) and either Data (exactly
// Info.Bytes() bytes) or Fill, called once when the tensor's turn comes to produce them, so that
// a large model is encoded one tensor at a time.
type Tensor struct {
	Name string
	Dims []uint64 // ggml order: Dims[0] is contiguous
	Type TensorType
	Data []byte
	Fill func() ([]byte, error)
}

// Write writes a GGUF v3 file of kvs and tensors, in the given order, with DefaultAlignment
// (a general.alignment entry in kvs is refused: this writer does not vary it).
func Write(w io.Writer, kvs []KV, tensors []Tensor) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	e := &enc{w: bw}
	e.raw([]byte(Magic))
	e.u32(Version)
	e.u64(uint64(len(tensors)))
	e.u64(uint64(len(kvs)))
	for _, kv := range kvs {
		if kv.Key == "general.alignment" {
			return fmt.Errorf("gguf: write: general.alignment is fixed at %d", DefaultAlignment)
		}
		if err := e.kv(kv); err != nil {
			return err
		}
	}
	sizes := make([]uint64, len(tensors))
	var off uint64
	seen := map[string]bool{}
	for i, t := range tensors {
		if seen[t.Name] {
			return fmt.Errorf("gguf: write: tensor %q twice", t.Name)
		}
		seen[t.Name] = true
		ti := TensorInfo{Name: t.Name, Dims: t.Dims, Type: t.Type}
		n, err := ti.Bytes()
		if err != nil {
			return fmt.Errorf("gguf: write: %w", err)
		}
		if len(t.Dims) > 4 {
			return fmt.Errorf("gguf: write: tensor %q has %d dimensions (ggml has at most 4)", t.Name, len(t.Dims))
		}
		if t.Fill == nil && uint64(len(t.Data)) != n {
			return fmt.Errorf("gguf: write: tensor %q: %d bytes of data for %s %v (want %d)", t.Name, len(t.Data), t.Type, t.Dims, n)
		}
		sizes[i] = n
		e.str(t.Name)
		e.u32(uint32(len(t.Dims)))
		for _, d := range t.Dims {
			e.u64(d)
		}
		e.u32(uint32(t.Type))
		e.u64(off)
		off = alignUp(off+n, DefaultAlignment)
	}
	e.pad()
	if e.err != nil {
		return fmt.Errorf("gguf: write: %w", e.err)
	}
	for i, t := range tensors {
		data := t.Data
		if t.Fill != nil {
			var err error
			if data, err = t.Fill(); err != nil {
				return fmt.Errorf("gguf: write tensor %q: %w", t.Name, err)
			}
			if uint64(len(data)) != sizes[i] {
				return fmt.Errorf("gguf: write: tensor %q: Fill gave %d bytes for %s %v (want %d)", t.Name, len(data), t.Type, t.Dims, sizes[i])
			}
		}
		e.raw(data)
		e.pad()
		if e.err != nil {
			return fmt.Errorf("gguf: write tensor %q: %w", t.Name, e.err)
		}
	}
	return bw.Flush()
}

// WriteFile writes path (via a temporary name in the same directory, renamed when complete).
func WriteFile(path string, kvs []KV, tensors []Tensor) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("gguf: %w", err)
	}
	if err := Write(f, kvs, tensors); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("gguf: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("gguf: %w", err)
	}
	return nil
}

// enc writes little-endian values, remembering the first error and the byte count.
type enc struct {
	w   io.Writer
	n   uint64
	err error
	b   [8]byte
}

func (e *enc) raw(p []byte) {
	if e.err != nil {
		return
	}
	n, err := e.w.Write(p)
	e.n += uint64(n)
	e.err = err
}

func (e *enc) u8(v uint8)   { e.raw([]byte{v}) }
func (e *enc) u16(v uint16) { binary.LittleEndian.PutUint16(e.b[:], v); e.raw(e.b[:2]) }
func (e *enc) u32(v uint32) { binary.LittleEndian.PutUint32(e.b[:], v); e.raw(e.b[:4]) }
func (e *enc) u64(v uint64) { binary.LittleEndian.PutUint64(e.b[:], v); e.raw(e.b[:8]) }
func (e *enc) str(s string) { e.u64(uint64(len(s))); e.raw([]byte(s)) }

func (e *enc) pad() {
	if r := e.n % DefaultAlignment; r != 0 {
		e.raw(make([]byte, DefaultAlignment-r))
	}
}

func (e *enc) kv(kv KV) error {
	e.str(kv.Key)
	if a, ok := kv.Value.(Array); ok {
		e.u32(uint32(TypeArray))
		e.u32(uint32(a.Elem))
		e.u64(uint64(a.Len()))
		if err := e.array(a); err != nil {
			return fmt.Errorf("gguf: write key %q: %w", kv.Key, err)
		}
		return nil
	}
	t, ok := typeOf(kv.Value)
	if !ok {
		return fmt.Errorf("gguf: write key %q: value of Go type %T has no GGUF type", kv.Key, kv.Value)
	}
	e.u32(uint32(t))
	e.scalar(kv.Value)
	return nil
}

func typeOf(v any) (ValueType, bool) {
	switch v.(type) {
	case uint8:
		return TypeUint8, true
	case int8:
		return TypeInt8, true
	case uint16:
		return TypeUint16, true
	case int16:
		return TypeInt16, true
	case uint32:
		return TypeUint32, true
	case int32:
		return TypeInt32, true
	case float32:
		return TypeFloat32, true
	case bool:
		return TypeBool, true
	case string:
		return TypeString, true
	case uint64:
		return TypeUint64, true
	case int64:
		return TypeInt64, true
	case float64:
		return TypeFloat64, true
	}
	return 0, false
}

func (e *enc) scalar(v any) {
	switch x := v.(type) {
	case uint8:
		e.u8(x)
	case int8:
		e.u8(uint8(x))
	case uint16:
		e.u16(x)
	case int16:
		e.u16(uint16(x))
	case uint32:
		e.u32(x)
	case int32:
		e.u32(uint32(x))
	case float32:
		e.u32(math.Float32bits(x))
	case bool:
		if x {
			e.u8(1)
		} else {
			e.u8(0)
		}
	case string:
		e.str(x)
	case uint64:
		e.u64(x)
	case int64:
		e.u64(uint64(x))
	case float64:
		e.u64(math.Float64bits(x))
	}
}

// array writes the elements of a; their Go type must match a.Elem.
func (e *enc) array(a Array) error {
	v := reflect.ValueOf(a.Values)
	if v.Kind() != reflect.Slice {
		return fmt.Errorf("array values of Go type %T are not a slice", a.Values)
	}
	for i := 0; i < v.Len(); i++ {
		x := v.Index(i).Interface()
		if t, _ := typeOf(x); t != a.Elem || a.Elem == TypeArray {
			return fmt.Errorf("array of type %d has elements of Go type %T", a.Elem, x)
		}
		e.scalar(x)
	}
	return nil
}
