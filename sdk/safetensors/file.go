package safetensors

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// File is an open safetensors file. The file is memory-mapped read-only (read once into memory
// where mapping is unavailable); tensor accessors copy out of the mapping, so their results stay
// valid after Close.
type File struct {
	path   string
	data   []byte // whole file
	mapped bool
	hdr    *Header
	byName map[string]int
}

// Open maps path and validates its header. Errors name path.
func Open(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: open %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("safetensors: stat %s: %w", path, err)
	}
	size := st.Size()
	var data []byte
	mapped := false
	if size > 0 && size == int64(int(size)) {
		if m, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED); err == nil {
			data, mapped = m, true
		}
	}
	if !mapped {
		if data, err = os.ReadFile(path); err != nil {
			return nil, fmt.Errorf("safetensors: read %s: %w", path, err)
		}
	}
	sf, err := newFile(path, data)
	if err != nil {
		if mapped {
			_ = unix.Munmap(data)
		}
		return nil, err
	}
	sf.mapped = mapped
	return sf, nil
}

// FromBytes parses an in-memory safetensors image; name is used in error messages. data is
// retained, not copied.
func FromBytes(name string, data []byte) (*File, error) { return newFile(name, data) }

func newFile(path string, data []byte) (*File, error) {
	h, err := ParseHeader(data, int64(len(data)))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	f := &File{path: path, data: data, hdr: h, byName: make(map[string]int, len(h.Tensors))}
	for i, t := range h.Tensors {
		f.byName[t.Name] = i
	}
	return f, nil
}

// Close releases the mapping. Accessors must not be called afterwards.
func (f *File) Close() error {
	if f.mapped && f.data != nil {
		err := unix.Munmap(f.data)
		f.data, f.mapped = nil, false
		if err != nil {
			return fmt.Errorf("safetensors: unmap %s: %w", f.path, err)
		}
	}
	f.data = nil
	return nil
}

// Path returns the file name given to Open.
func (f *File) Path() string { return f.path }

// Names returns the tensor names in lexical order.
func (f *File) Names() []string { return f.hdr.sortedNames() }

// Metadata returns the "__metadata__" map (nil when absent).
func (f *File) Metadata() map[string]string { return f.hdr.Metadata }

// Has reports whether the file holds a tensor called name.
func (f *File) Has(name string) bool { _, ok := f.byName[name]; return ok }

// Info returns the description of tensor name; the error wraps ErrNotFound.
func (f *File) Info(name string) (TensorInfo, error) {
	i, ok := f.byName[name]
	if !ok {
		return TensorInfo{}, fmt.Errorf("%s: tensor %q: %w", f.path, name, ErrNotFound)
	}
	return f.hdr.Tensors[i], nil
}

// Raw returns the tensor's little-endian bytes as stored; the slice aliases the file mapping
// and is valid until Close.
func (f *File) Raw(name string) ([]byte, TensorInfo, error) {
	ti, err := f.Info(name)
	if err != nil {
		return nil, ti, err
	}
	s := f.hdr.DataStart
	return f.data[s+ti.Begin : s+ti.End], ti, nil
}

// Release tells the kernel that tensor name's bytes will not be read again soon: on a mapped
// file their pages leave the process's resident memory (they stay in the page cache, and a later
// read maps them back in). A loader that copies each tensor out calls it after the copy, so that
// the mapping does not hold a second copy of the weights until Close. It does nothing for a file
// read into memory or an unknown name; its error is only advisory.
func (f *File) Release(name string) error {
	raw, _, err := f.Raw(name)
	if err != nil || !f.mapped || len(raw) == 0 {
		return nil
	}
	// madvise wants page-aligned ranges: round outwards. Dropping a neighbour's pages costs at
	// most a page fault when it is read.
	page := os.Getpagesize()
	start := int(uintptr(unsafe.Pointer(&raw[0])) - uintptr(unsafe.Pointer(&f.data[0])))
	lo, hi := start/page*page, min(len(f.data), (start+len(raw)+page-1)/page*page)
	if err := unix.Madvise(f.data[lo:hi], unix.MADV_DONTNEED); err != nil {
		return fmt.Errorf("safetensors: release %s in %s: %w", name, f.path, err)
	}
	return nil
}

// Float32 converts tensor name (F32, F16, BF16 or F64) to a new float32 slice in row-major
// order and returns it with its shape.
func (f *File) Float32(name string) ([]float32, []int, error) {
	raw, ti, err := f.Raw(name)
	if err != nil {
		return nil, nil, err
	}
	out := make([]float32, ti.NumElements())
	if err := DecodeFloat32(out, raw, ti.DType); err != nil {
		return nil, nil, fmt.Errorf("%s: tensor %q: %w", f.path, name, err)
	}
	return out, ti.Shape, nil
}

// Int64 converts an integer tensor (I64, I32, I16, I8, U8, U32, U16, BOOL) to a new int64 slice
// and returns it with its shape. U64 values above MaxInt64 are an error.
func (f *File) Int64(name string) ([]int64, []int, error) {
	raw, ti, err := f.Raw(name)
	if err != nil {
		return nil, nil, err
	}
	n := ti.NumElements()
	out := make([]int64, n)
	le := binary.LittleEndian
	switch ti.DType {
	case I64:
		for i := range out {
			out[i] = int64(le.Uint64(raw[8*i:]))
		}
	case U64:
		for i := range out {
			v := le.Uint64(raw[8*i:])
			if v > math.MaxInt64 {
				return nil, nil, fmt.Errorf("%s: tensor %q: element %d = %d overflows int64", f.path, name, i, v)
			}
			out[i] = int64(v)
		}
	case I32:
		for i := range out {
			out[i] = int64(int32(le.Uint32(raw[4*i:])))
		}
	case U32:
		for i := range out {
			out[i] = int64(le.Uint32(raw[4*i:]))
		}
	case I16:
		for i := range out {
			out[i] = int64(int16(le.Uint16(raw[2*i:])))
		}
	case U16:
		for i := range out {
			out[i] = int64(le.Uint16(raw[2*i:]))
		}
	case I8:
		for i := range out {
			out[i] = int64(int8(raw[i]))
		}
	case U8, BOOL:
		for i := range out {
			out[i] = int64(raw[i])
		}
	default:
		return nil, nil, fmt.Errorf("%s: tensor %q: %w: %s is not an integer type", f.path, name, ErrDType, ti.DType)
	}
	return out, ti.Shape, nil
}

// DecodeFloat32 converts raw little-endian elements of dtype dt into dst, which must hold
// exactly len(raw)/dt.Size() elements (panics otherwise: a programming error).
func DecodeFloat32(dst []float32, raw []byte, dt DType) error {
	if sz := dt.Size(); sz == 0 || len(raw) != len(dst)*sz {
		if sz == 0 {
			return fmt.Errorf("%w: %q", ErrDType, string(dt))
		}
		panic(fmt.Sprintf("safetensors: DecodeFloat32: %d bytes of %s for %d elements", len(raw), dt, len(dst)))
	}
	le := binary.LittleEndian
	switch dt {
	case F32:
		for i := range dst {
			dst[i] = math.Float32frombits(le.Uint32(raw[4*i:]))
		}
	case F16:
		for i := range dst {
			dst[i] = F16ToF32(le.Uint16(raw[2*i:]))
		}
	case BF16:
		for i := range dst {
			dst[i] = BF16ToF32(le.Uint16(raw[2*i:]))
		}
	case F64:
		for i := range dst {
			dst[i] = float32(math.Float64frombits(le.Uint64(raw[8*i:])))
		}
	default:
		return fmt.Errorf("%w: %s cannot be read as float32", ErrDType, dt)
	}
	return nil
}

// F16ToF32 converts IEEE 754 binary16 bits to float32 exactly (subnormals, infinities and NaN
// included).
func F16ToF32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	man := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // inf / NaN
		return math.Float32frombits(sign | 0x7f800000 | man<<13)
	case exp != 0: // normal
		return math.Float32frombits(sign | (exp+112)<<23 | man<<13)
	case man == 0:
		return math.Float32frombits(sign)
	default: // subnormal: man × 2^-24
		v := float32(man) * (1.0 / (1 << 24))
		if sign != 0 {
			v = -v
		}
		return v
	}
}

// F32ToF16 rounds a float32 to the nearest binary16 (ties to even), with overflow to infinity
// and NaN preserved as a quiet NaN.
func F32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff
	man := b & 0x7fffff
	if exp == 0xff {
		if man != 0 {
			return sign | 0x7e00
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		if e < -10 {
			return sign
		}
		// subnormal: shift the full significand (with implicit 1) right
		m := man | 0x800000
		shift := uint32(14 - e)
		half := uint32(1) << (shift - 1)
		r := m >> shift
		rem := m & (1<<shift - 1)
		if rem > half || (rem == half && r&1 == 1) {
			r++
		}
		return sign | uint16(r)
	}
	r := uint32(e)<<10 | man>>13
	rem := man & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && r&1 == 1) {
		r++ // may carry into the exponent, up to infinity: correct rounding
	}
	return sign | uint16(r)
}

// BF16ToF32 converts bfloat16 bits to float32 exactly.
func BF16ToF32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// F32ToBF16 rounds a float32 to the nearest bfloat16 (ties to even); NaN stays NaN.
func F32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x40
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}
