package safetensors

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
)

// Tensor is one tensor to write. Float tensors (DType F32, F16 or BF16) take their values from
// F32, rounded to the stored type (ties to even); integer tensors (I64, I32) from I64.
type Tensor struct {
	Name  string
	DType DType
	Shape []int
	F32   []float32
	I64   []int64
}

func (t Tensor) check() error {
	n := 1
	for _, d := range t.Shape {
		if d < 0 {
			return fmt.Errorf("safetensors: write tensor %q: negative dimension in %v", t.Name, t.Shape)
		}
		n *= d
	}
	var have int
	switch t.DType {
	case F32, F16, BF16:
		have = len(t.F32)
	case I64, I32:
		have = len(t.I64)
	default:
		return fmt.Errorf("safetensors: write tensor %q: %w: cannot write %q", t.Name, ErrDType, string(t.DType))
	}
	if have != n {
		return fmt.Errorf("safetensors: write tensor %q: shape %v holds %d elements, data has %d", t.Name, t.Shape, n, have)
	}
	if t.DType == I32 {
		for _, v := range t.I64 {
			if v < math.MinInt32 || v > math.MaxInt32 {
				return fmt.Errorf("safetensors: write tensor %q: %d overflows I32", t.Name, v)
			}
		}
	}
	if t.Name == "" || t.Name == metaKey {
		return fmt.Errorf("safetensors: write: invalid tensor name %q", t.Name)
	}
	return nil
}

// Write encodes tensors (in name order) with optional metadata to w.
func Write(w io.Writer, tensors []Tensor, metadata map[string]string) error {
	ts := append([]Tensor(nil), tensors...)
	sort.Slice(ts, func(i, j int) bool { return ts[i].Name < ts[j].Name })
	type entry struct {
		DType       DType   `json:"dtype"`
		Shape       []int   `json:"shape"`
		DataOffsets []int64 `json:"data_offsets"`
	}
	hdr := map[string]any{}
	var off int64
	for i, t := range ts {
		if err := t.check(); err != nil {
			return err
		}
		if i > 0 && ts[i-1].Name == t.Name {
			return fmt.Errorf("safetensors: write: duplicate tensor %q", t.Name)
		}
		n := int64(len(t.F32) + len(t.I64))
		size := n * int64(t.DType.Size())
		shape := t.Shape
		if shape == nil {
			shape = []int{}
		}
		hdr[t.Name] = entry{t.DType, shape, []int64{off, off + size}}
		off += size
	}
	if metadata != nil {
		hdr[metaKey] = metadata
	}
	js, err := json.Marshal(hdr)
	if err != nil {
		return fmt.Errorf("safetensors: write header: %w", err)
	}
	for len(js)%8 != 0 {
		js = append(js, ' ')
	}
	bw := bufio.NewWriterSize(w, 1<<16)
	var b8 [8]byte
	binary.LittleEndian.PutUint64(b8[:], uint64(len(js)))
	bw.Write(b8[:])
	bw.Write(js)
	le := binary.LittleEndian
	for _, t := range ts {
		switch t.DType {
		case F32:
			for _, v := range t.F32 {
				le.PutUint32(b8[:], math.Float32bits(v))
				bw.Write(b8[:4])
			}
		case F16, BF16:
			round := F32ToF16
			if t.DType == BF16 {
				round = F32ToBF16
			}
			for _, v := range t.F32 {
				le.PutUint16(b8[:], round(v))
				bw.Write(b8[:2])
			}
		case I64:
			for _, v := range t.I64 {
				le.PutUint64(b8[:], uint64(v))
				bw.Write(b8[:8])
			}
		case I32:
			for _, v := range t.I64 {
				le.PutUint32(b8[:], uint32(int32(v)))
				bw.Write(b8[:4])
			}
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("safetensors: write: %w", err)
	}
	return nil
}

// WriteFile writes tensors to path atomically (a temporary file in the same directory renamed
// into place).
func WriteFile(path string, tensors []Tensor, metadata map[string]string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("safetensors: create %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := Write(tmp, tensors, metadata); err != nil {
		tmp.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("safetensors: close %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	return nil
}
