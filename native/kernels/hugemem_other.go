//go:build !linux

package kernels

// NewHugeMem returns bytes of zeroed memory from the Go heap: huge pages are only asked for on
// Linux.
func NewHugeMem(bytes int) *HugeMem { return &HugeMem{mem: make([]byte, max(bytes, 0))} }

// Free drops h's memory.
func (h *HugeMem) Free() {
	if h != nil {
		h.mem, h.off = nil, 0
	}
}

// Populate does nothing: heap memory is resident already.
func (h *HugeMem) Populate() {}
