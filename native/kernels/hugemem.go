package kernels

import (
	"fmt"
	"unsafe"
)

// HugeMem is memory for large buffers that are streamed over and over — a model's weights, the
// bandwidth probe: one anonymous mapping, advised for transparent huge pages where the system
// offers them (hugemem_linux.go), carved into slices. Streaming 500 MB of weights per decoded
// token through 4 KiB pages costs a TLB miss every 4 KiB; 2 MiB pages remove almost all of them.
// Where mapping fails the memory comes from the Go heap. The slices it hands out must not be
// used after Free.
type HugeMem struct {
	mem    []byte
	off    int
	mapped bool // mem is a mapping (unmapped by Free), not a heap slice
	huge   bool // the mapping is advised for huge pages
}

// hugeMemAlign is the alignment of each slice HugeSlice carves (a cache line).
const hugeMemAlign = 64

// HugeSlice returns the next n elements of h, zeroed, aligned to a cache line. It panics when h
// has less room left.
func HugeSlice[T float32 | int8 | uint16 | byte](h *HugeMem, n int) []T {
	if n == 0 {
		return nil
	}
	var z T
	size := int(unsafe.Sizeof(z))
	at := (h.off + hugeMemAlign - 1) &^ (hugeMemAlign - 1)
	if at+n*size > len(h.mem) {
		panic(fmt.Sprintf("kernels: HugeSlice: %d bytes asked, %d of %d left", n*size, len(h.mem)-at, len(h.mem)))
	}
	h.off = at + n*size
	return unsafe.Slice((*T)(unsafe.Pointer(&h.mem[at])), n)
}

// HugeBytes returns the bytes a HugeMem needs for slices of the given byte lengths, carved in
// any order (each rounded up to HugeSlice's alignment).
func HugeBytes(lengths ...int) int {
	n := 0
	for _, l := range lengths {
		n += (l + hugeMemAlign - 1) &^ (hugeMemAlign - 1)
	}
	return n
}

// Huge reports whether h is a mapping advised for huge pages.
func (h *HugeMem) Huge() bool { return h != nil && h.huge }

// Len returns h's size in bytes.
func (h *HugeMem) Len() int {
	if h == nil {
		return 0
	}
	return len(h.mem)
}

// UseHugePages makes NewHugeMem advise its mappings for huge pages; false keeps 4 KiB pages
// (for A/B measurements: the mapping is otherwise the same).
var UseHugePages = true

// Base returns the address of h's first byte (nil when empty).
func (h *HugeMem) Base() *byte {
	if h == nil || len(h.mem) == 0 {
		return nil
	}
	return &h.mem[0]
}

// hugePage is the size of a transparent huge page on amd64 and arm64 (4 KiB base pages).
const hugePage = 2 << 20
