package kernels

import (
	"testing"
	"unsafe"
)

func TestHugeMem(t *testing.T) {
	lengths := []int{3 << 20, 5, 4 * 1000, 0, 77}
	h := NewHugeMem(HugeBytes(lengths...))
	defer h.Free()
	if h.Len() < HugeBytes(lengths...) {
		t.Fatalf("Len %d < %d", h.Len(), HugeBytes(lengths...))
	}
	if h.mapped && uintptr(unsafe.Pointer(h.Base()))%hugePage != 0 {
		t.Errorf("mapping at %p, not on a 2 MiB boundary", h.Base())
	}
	t.Logf("mapped %v, huge pages %v", h.mapped, h.Huge())
	a := HugeSlice[byte](h, lengths[0])
	b := HugeSlice[int8](h, lengths[1])
	c := HugeSlice[float32](h, lengths[2]/4)
	d := HugeSlice[uint16](h, lengths[3])
	e := HugeSlice[byte](h, lengths[4])
	if len(a) != lengths[0] || len(b) != lengths[1] || len(c) != lengths[2]/4 || d != nil || len(e) != lengths[4] {
		t.Fatalf("lengths %d %d %d %d %d", len(a), len(b), len(c), len(d), len(e))
	}
	for _, p := range []unsafe.Pointer{unsafe.Pointer(&a[0]), unsafe.Pointer(&b[0]), unsafe.Pointer(&c[0]), unsafe.Pointer(&e[0])} {
		if uintptr(p)%hugeMemAlign != 0 {
			t.Errorf("slice at %p not aligned to %d", p, hugeMemAlign)
		}
	}
	for i := range c {
		if c[i] != 0 {
			t.Fatalf("c[%d] = %v, want zeroed memory", i, c[i])
		}
		c[i] = float32(i)
	}
	a[len(a)-1], e[len(e)-1] = 1, 2
	if c[len(c)-1] != float32(len(c)-1) || a[len(a)-1] != 1 {
		t.Fatal("slices overlap")
	}
	defer func() {
		if recover() == nil {
			t.Error("HugeSlice past the end did not panic")
		}
	}()
	HugeSlice[float32](h, h.Len())
}

func TestHugeMemHeapFallback(t *testing.T) {
	h := &HugeMem{mem: make([]byte, 256)}
	s := HugeSlice[float32](h, 10)
	s[9] = 1
	h.Populate()
	h.Free()
	if h.Len() != 0 || h.Huge() {
		t.Fatal("Free left memory behind")
	}
}
