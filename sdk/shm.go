package sdk

import (
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/modelrt/modelrt/sdk/internal/pb"
)

// Shared-memory transport for large outputs.
//
// A decode step of GPT-2 returns a 200 KB logits row. Over gRPC (HTTP/2 frames, TLS records,
// two copies per side) that costs about three times the fixed cost of a call. So the host
// creates one anonymous shared-memory segment (memfd) per plugin process, passes it to the
// child as an inherited file descriptor, and lends a slot of it to each Infer call. The
// plugin's side of the SDK writes every output of at least ShmMinTensorBytes into the slot and
// sends only offsets over gRPC; the host copies the bytes out and takes the slot back. Backend
// authors see none of it: the same Tensor values arrive either way.
//
// The segment is private to the host and that one plugin process (no path, no name in the
// file system); the gRPC connection beside it stays on AutoMTLS. A plugin built with an SDK
// that knows nothing of the segment ignores the request fields and answers inline.
//
// Slot life cycle. The first 64 bytes of a slot are a header whose first word is the slot's
// state, ticket<<2 | phase, changed with atomic operations by both processes:
//
//	host lends        free → lent(ticket)
//	plugin claims     lent(ticket) → busy(ticket)   (compare-and-swap when the call starts; fails if revoked)
//	plugin finishes   busy(ticket) → done(ticket)   (before its answer is sent)
//	host takes back   lent/done → free; busy → pending until the plugin marks it done
//
// The pending state is what makes cancellation safe: a call whose context ends may find the
// plugin still computing, which will write the slot later. The host reuses such a slot only
// after the plugin has marked it done (or revoked it first, so the plugin's claim fails and it
// answers inline). A crashed plugin's segment is dropped with the process.
//
// Because the plugin claims the slot when the call starts and marks it done when the backend
// has returned, the state word also tells the host whether a call it gave up on is still
// running in the plugin: Client.Infer waits for that (awaitDone) before it returns a
// cancelled call, so the caller's concurrency limits hold until the work has really stopped.

// Shared-memory layout and sizes.
const (
	// ShmMinTensorBytes: smaller outputs travel inline; an extra copy is cheaper than a slot.
	ShmMinTensorBytes = 16 << 10
	// DefaultShmSlots and DefaultShmSlotBytes size a host's segment: one slot per concurrent
	// call, each large enough for a batch-of-32 logits row of GPT-2 (32·50257·4 = 6.4 MB) or a
	// 512×512 RGB image. Calls beyond the slots, and outputs beyond a slot, go inline. The
	// segment is sparse: only pages a call has written take memory.
	DefaultShmSlots     = 8
	DefaultShmSlotBytes = 16 << 20
	shmHeaderBytes      = 64
	shmAlign            = 64

	shmEnvFD    = "MODELRT_SHM_FD"
	shmEnvBytes = "MODELRT_SHM_BYTES"
)

// Slot phases, the low two bits of a slot's state word.
const (
	shmFree = iota
	shmLent
	shmBusy
	shmDone
)

func shmState(mem []byte, off uint64) *atomic.Uint64 {
	return (*atomic.Uint64)(unsafe.Pointer(&mem[off]))
}

// SharedMemory is the host's end of a segment shared with one plugin process. Create it with
// NewSharedMemory, pass File to the child (exec.Cmd.ExtraFiles) with Env, attach it to the
// Client with UseSharedMemory, and Close it when the process is gone. Safe for concurrent use.
type SharedMemory struct {
	file      *os.File
	mem       []byte
	slotBytes int

	mu       sync.Mutex
	free     []int // a stack: sequential calls reuse the same, already touched, slot
	pending  []int
	tickets  uint64
	inflight int
	closed   bool

	calls, bytes atomic.Int64
}

// NewSharedMemory creates a segment of slots × slotBytes (rounded up to 64 bytes).
func NewSharedMemory(slots, slotBytes int) (*SharedMemory, error) {
	if slots <= 0 || slotBytes <= shmHeaderBytes {
		return nil, fmt.Errorf("sdk: shared memory: %d slots of %d bytes", slots, slotBytes)
	}
	slotBytes = (slotBytes + shmAlign - 1) &^ (shmAlign - 1)
	f, mem, err := shmCreate(slots * slotBytes)
	if err != nil {
		return nil, fmt.Errorf("sdk: shared memory: %w", err)
	}
	m := &SharedMemory{file: f, mem: mem, slotBytes: slotBytes}
	for i := slots - 1; i >= 0; i-- {
		m.free = append(m.free, i)
	}
	return m, nil
}

// File is the segment's descriptor, for exec.Cmd.ExtraFiles.
func (m *SharedMemory) File() *os.File { return m.file }

// Env returns the environment that tells the plugin where the segment is: fd is the number
// the child sees it under (3 + its index in ExtraFiles). On a nil *SharedMemory it returns
// the variables set empty, for a child started without a segment: values the host itself
// inherited would otherwise send the child to map whatever its descriptor fd happens to be.
func (m *SharedMemory) Env(fd int) []string {
	if m == nil {
		return []string{shmEnvFD + "=", shmEnvBytes + "="}
	}
	return []string{shmEnvFD + "=" + strconv.Itoa(fd), shmEnvBytes + "=" + strconv.Itoa(len(m.mem))}
}

// ShmStats counts what went through the segment.
type ShmStats struct {
	// Calls is the number of Infer answers that carried at least one output in shared memory;
	// Bytes is the payload they carried that way.
	Calls, Bytes int64
}

// Stats reports what went through the segment so far.
func (m *SharedMemory) Stats() ShmStats {
	return ShmStats{Calls: m.calls.Load(), Bytes: m.bytes.Load()}
}

// Close releases the segment once no call uses it any more.
func (m *SharedMemory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	err := m.file.Close()
	if m.inflight == 0 {
		shmUnmap(m.mem)
		m.mem = nil
	}
	return err
}

// lend reserves a slot for one call; ok is false when none is free (the call goes inline).
func (m *SharedMemory) lend() (slot int, ticket uint64, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, 0, false
	}
	if len(m.free) == 0 {
		m.reclaim()
	}
	if len(m.free) == 0 {
		return 0, 0, false
	}
	slot = m.free[len(m.free)-1]
	m.free = m.free[:len(m.free)-1]
	m.tickets++
	ticket = m.tickets
	shmState(m.mem, m.offset(slot)).Store(ticket<<2 | shmLent)
	m.inflight++
	return slot, ticket, true
}

// reclaim moves pending slots the plugin has finished with back to the free stack.
func (m *SharedMemory) reclaim() {
	kept := m.pending[:0]
	for _, s := range m.pending {
		if shmState(m.mem, m.offset(s)).Load()&3 == shmDone {
			m.free = append(m.free, s)
		} else {
			kept = append(kept, s)
		}
	}
	m.pending = kept
}

// giveBack ends a call's use of its slot.
func (m *SharedMemory) giveBack(slot int, ticket uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := shmState(m.mem, m.offset(slot))
	// Revoke the loan if the plugin has not claimed it; otherwise the slot is reusable only
	// once the plugin is done with it.
	if st.CompareAndSwap(ticket<<2|shmLent, shmFree) || st.Load() == ticket<<2|shmDone {
		st.Store(shmFree)
		m.free = append(m.free, slot)
	} else {
		m.pending = append(m.pending, slot)
	}
	m.inflight--
	if m.closed && m.inflight == 0 && m.mem != nil {
		shmUnmap(m.mem)
		m.mem = nil
	}
}

// awaitDone waits while the plugin still runs the call of ticket in slot (its state is
// busy(ticket)): until the plugin marks it done, the segment is closed (the process is gone) or
// deadline passes. It reports whether the call was seen to end.
func (m *SharedMemory) awaitDone(slot int, ticket uint64, deadline time.Time) bool {
	m.mu.Lock()
	st := shmState(m.mem, m.offset(slot))
	m.mu.Unlock()
	wait := time.Millisecond
	for {
		if st.Load() != ticket<<2|shmBusy {
			return true
		}
		m.mu.Lock()
		closed := m.closed
		m.mu.Unlock()
		if closed || time.Now().After(deadline) {
			return false
		}
		time.Sleep(wait)
		wait = min(2*wait, 20*time.Millisecond)
	}
}

func (m *SharedMemory) offset(slot int) uint64 { return uint64(slot) * uint64(m.slotBytes) }

// outputFromShm copies an output the plugin placed in the call's slot out of the segment,
// after checking that it lies inside that slot, into buf when it is large enough.
func (m *SharedMemory) outputFromShm(name string, p *pb.Tensor, slot int, buf []byte) ([]byte, error) {
	lo := m.offset(slot) + shmHeaderBytes
	hi := m.offset(slot) + uint64(m.slotBytes)
	if p.ShmOffset < lo || p.ShmLength > hi-lo || p.ShmOffset > hi-p.ShmLength {
		return nil, InvalidArgument("output %q: shared-memory range [%d, +%d) is outside the call's slot [%d, %d)",
			name, p.ShmOffset, p.ShmLength, lo, hi)
	}
	var data []byte
	if uint64(cap(buf)) >= p.ShmLength {
		data = buf[:p.ShmLength]
	} else {
		data = make([]byte, p.ShmLength)
	}
	copy(data, m.mem[p.ShmOffset:p.ShmOffset+p.ShmLength])
	return data, nil
}

// shmSegment is the plugin's end of the segment.
type shmSegment struct {
	mem []byte
}

// openShmFromEnv maps the segment the host passed, if any. A plugin started without one
// (another host, or by hand) gets nil and answers inline.
func openShmFromEnv() (*shmSegment, error) {
	fdText, sizeText := os.Getenv(shmEnvFD), os.Getenv(shmEnvBytes)
	// The segment is this process's alone: processes the backend starts must not be told of it.
	os.Unsetenv(shmEnvFD)
	os.Unsetenv(shmEnvBytes)
	if fdText == "" {
		return nil, nil
	}
	fd, err1 := strconv.Atoi(fdText)
	size, err2 := strconv.Atoi(sizeText)
	if err1 != nil || err2 != nil || fd < 3 || size <= 0 {
		return nil, fmt.Errorf("sdk: %s=%q %s=%q: want a descriptor ≥ 3 and a positive size", shmEnvFD, fdText, shmEnvBytes, sizeText)
	}
	mem, err := shmMap(fd, size)
	if err != nil {
		return nil, fmt.Errorf("sdk: map shared memory (fd %d, %d bytes): %w", fd, size, err)
	}
	return &shmSegment{mem: mem}, nil
}

// slot returns the state word of the call's slot; nil when the call was lent none (or a
// malformed one).
func (s *shmSegment) slot(req *pb.InferRequest) *atomic.Uint64 {
	if s == nil || req.ShmSize == 0 {
		return nil
	}
	off, size := req.ShmOffset, req.ShmSize
	if off%shmAlign != 0 || size <= shmHeaderBytes || off > uint64(len(s.mem)) || size > uint64(len(s.mem))-off {
		return nil
	}
	return shmState(s.mem, off)
}

// claim marks the call's slot busy for as long as the backend computes, so that the host can
// tell a call it gave up on is still running. It reports whether the call holds the slot (not
// when none was lent or the host revoked the loan); the caller then calls finish.
func (s *shmSegment) claim(req *pb.InferRequest) bool {
	st := s.slot(req)
	return st != nil && st.CompareAndSwap(req.ShmTicket<<2|shmLent, req.ShmTicket<<2|shmBusy)
}

// finish marks a claimed slot done (writeOutputs may have done so already).
func (s *shmSegment) finish(req *pb.InferRequest) {
	if st := s.slot(req); st != nil {
		st.CompareAndSwap(req.ShmTicket<<2|shmBusy, req.ShmTicket<<2|shmDone)
	}
}

// writeOutputs moves the outputs of at least ShmMinTensorBytes into the lent region when they
// all fit and the loan is still valid (lent, or claimed by this call); otherwise every output
// stays inline.
func (s *shmSegment) writeOutputs(req *pb.InferRequest, out map[string]*pb.Tensor) {
	st := s.slot(req)
	if st == nil {
		return
	}
	off, size := req.ShmOffset, req.ShmSize
	need := uint64(0)
	for _, t := range out {
		if len(t.Data) >= ShmMinTensorBytes {
			need += (uint64(len(t.Data)) + shmAlign - 1) &^ (shmAlign - 1)
		}
	}
	if need == 0 || need > size-shmHeaderBytes {
		return
	}
	busy := req.ShmTicket<<2 | shmBusy
	if st.Load() != busy && !st.CompareAndSwap(req.ShmTicket<<2|shmLent, busy) {
		return // revoked: the host has given up on this call
	}
	at := off + shmHeaderBytes
	for _, t := range out {
		if len(t.Data) < ShmMinTensorBytes {
			continue
		}
		n := uint64(len(t.Data))
		copy(s.mem[at:at+n], t.Data)
		t.Data, t.InShm, t.ShmOffset, t.ShmLength = nil, true, at, n
		at += (n + shmAlign - 1) &^ (shmAlign - 1)
	}
	st.Store(req.ShmTicket<<2 | shmDone)
}
