package kernels

import (
	"log/slog"
	"unsafe"

	"golang.org/x/sys/unix"
)

// NewHugeMem returns bytes of zeroed memory: an anonymous mapping rounded up to whole 2 MiB
// pages, starting on a 2 MiB boundary, and advised MADV_HUGEPAGE (with transparent_hugepage in
// "madvise" mode, the only way a process gets huge pages) when UseHugePages is set, except the
// last partial 2 MiB of the request; or, when mapping fails, a Go heap slice. Pages become resident as they are first written, 2 MiB at a
// time when the kernel has huge pages free.
func NewHugeMem(bytes int) *HugeMem {
	if bytes <= 0 {
		return &HugeMem{}
	}
	size := uintptr(bytes+hugePage-1) &^ (hugePage - 1)
	// Map one huge page more and trim, so that the memory starts on a 2 MiB boundary: the
	// kernel backs with huge pages only the aligned 2 MiB ranges of a mapping.
	raw, err := unix.MmapPtr(-1, 0, nil, size+hugePage, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		slog.Debug("kernels: huge-page memory on the Go heap", "bytes", bytes, "err", err)
		return &HugeMem{mem: make([]byte, bytes)}
	}
	lead := (hugePage - uintptr(raw)%hugePage) % hugePage
	if lead > 0 {
		_ = unix.MunmapPtr(raw, lead)
	}
	base := unsafe.Add(raw, lead)
	if tail := hugePage - lead; tail > 0 {
		_ = unix.MunmapPtr(unsafe.Add(base, size), tail)
	}
	h := &HugeMem{mem: unsafe.Slice((*byte)(base), size), mapped: true}
	// Only the whole 2 MiB pages the caller asked for are advised: a huge page at the tail
	// would make up to 2 MiB resident that nothing uses (1.7 MiB for GPT-2 124M's int8 weights),
	// where 4 KiB pages make resident only what is written.
	whole := bytes &^ (hugePage - 1)
	if UseHugePages && whole > 0 {
		h.huge = unix.Madvise(h.mem[:whole], unix.MADV_HUGEPAGE) == nil
	}
	if whole < len(h.mem) {
		_ = unix.Madvise(h.mem[whole:], unix.MADV_NOHUGEPAGE) // also where THP is "always"
	}
	return h
}

// Free returns h's memory to the system (a mapping) or to the garbage collector.
func (h *HugeMem) Free() {
	if h == nil || h.mem == nil {
		return
	}
	if h.mapped {
		if err := unix.MunmapPtr(unsafe.Pointer(&h.mem[0]), uintptr(len(h.mem))); err != nil {
			slog.Warn("kernels: huge-page memory unmap", "err", err)
		}
	}
	h.mem, h.off = nil, 0
}

// Populate makes all of h resident now (MADV_POPULATE_WRITE, one call instead of a page fault
// per page), where the kernel supports it; elsewhere pages fault in as they are first written.
func (h *HugeMem) Populate() {
	if h != nil && h.mapped {
		_ = unix.Madvise(h.mem, unix.MADV_POPULATE_WRITE)
	}
}
