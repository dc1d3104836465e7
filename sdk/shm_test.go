//go:build linux

package sdk

import (
	"context"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"
	"golang.org/x/sys/unix"

	"github.com/modelrt/modelrt/sdk/internal/pb"
)

// rowBackend answers every Infer with a float32 row of params-independent values whose length
// is the "n" input, plus a small int64 output, so that one answer mixes shared-memory and
// inline outputs. A call with input "wait" blocks until release is closed, ignoring its
// context: a backend that finishes after the host has given up on the call.
type rowBackend struct {
	recordingBackend
	release chan struct{}
}

func (b *rowBackend) Infer(_ context.Context, r *InferRequest) (*InferResponse, error) {
	n, err := r.Inputs["n"].Int64s()
	if err != nil {
		return nil, err
	}
	if _, ok := r.Inputs["wait"]; ok {
		<-b.release
	}
	return &InferResponse{Outputs: map[string]*Tensor{
		"row":   FromFloat32([]int64{1, n[0]}, testRow(int(n[0]))),
		"count": FromInt64([]int64{1}, n),
	}}, nil
}

func testRow(n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(math.Sin(float64(i)))
	}
	return v
}

// connectShm serves impl in-process over real gRPC, with the plugin's end of m mapped as a
// second view of the same memory (what a child process maps through the inherited fd).
func connectShm(t *testing.T, impl Backend, m *SharedMemory) *Client {
	t.Helper()
	conn, _ := plugin.TestPluginGRPCConn(t, false, serverPlugins(impl, &shmSegment{mem: m.mem})[ProtocolVersion])
	t.Cleanup(func() { conn.Close() })
	raw, err := conn.Dispense(PluginName)
	if err != nil {
		t.Fatal(err)
	}
	c := raw.(*Client)
	c.UseSharedMemory(m)
	return c
}

func newTestShm(t *testing.T, slots, slotBytes int) *SharedMemory {
	t.Helper()
	m, err := NewSharedMemory(slots, slotBytes)
	if err != nil {
		t.Fatalf("NewSharedMemory: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func inferRow(t *testing.T, c *Client, n int) {
	t.Helper()
	r, err := c.Infer(context.Background(), &InferRequest{Model: "m", Inputs: map[string]*Tensor{"n": FromInt64([]int64{1}, []int64{int64(n)})}})
	if err != nil {
		t.Fatalf("Infer(n=%d): %v", n, err)
	}
	checkRow(t, r, n)
}

func checkRow(t *testing.T, r *InferResponse, n int) {
	t.Helper()
	got, err := r.Outputs["row"].Float32s()
	if err != nil {
		t.Fatalf("row: %v", err)
	}
	want := testRow(n)
	if len(got) != len(want) {
		t.Fatalf("row has %d elements, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("row[%d] = %v, want %v (first mismatch)", i, got[i], want[i])
		}
	}
	if c, err := r.Outputs["count"].Int64s(); err != nil || len(c) != 1 || c[0] != int64(n) {
		t.Fatalf("count = %v, %v; want [%d]", c, err, n)
	}
}

func TestSharedMemoryCarriesLargeOutputs(t *testing.T) {
	m := newTestShm(t, 2, 1<<20)
	c := connectShm(t, &rowBackend{}, m)
	inferRow(t, c, 50257) // 201 KB: through the segment
	if st := m.Stats(); st.Calls != 1 || st.Bytes != 50257*4 {
		t.Fatalf("stats after a logits row = %+v, want 1 call of %d bytes", st, 50257*4)
	}
	inferRow(t, c, 100)   // 400 B: inline
	inferRow(t, c, 1<<19) // 2 MiB, larger than a slot: inline
	if st := m.Stats(); st.Calls != 1 {
		t.Fatalf("stats = %+v: small and oversized outputs must travel inline", st)
	}
	// Sequential calls reuse one slot; nothing is left lent or pending.
	for range 20 {
		inferRow(t, c, 20000)
	}
	m.mu.Lock()
	free, pending := len(m.free), len(m.pending)
	m.mu.Unlock()
	if free != 2 || pending != 0 {
		t.Fatalf("after the calls: %d free and %d pending slots, want 2 and 0", free, pending)
	}
}

func TestSharedMemoryConcurrentCalls(t *testing.T) {
	m := newTestShm(t, 3, 1<<20)
	c := connectShm(t, &rowBackend{}, m)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 10 {
				n := 5000 + 97*g + i
				r, err := c.Infer(context.Background(), &InferRequest{Model: "m", Inputs: map[string]*Tensor{"n": FromInt64([]int64{1}, []int64{int64(n)})}})
				if err != nil {
					t.Errorf("Infer: %v", err)
					return
				}
				checkRow(t, r, n)
			}
		})
	}
	wg.Wait()
	if st := m.Stats(); st.Calls == 0 {
		t.Fatal("no answer used the segment")
	}
}

// A call the host gives up on (its context ends) while the backend still computes returns only
// once the backend has returned (the plugin holds its slot busy until then), so that the
// caller's concurrency limit covers the work still running; calls meanwhile answer inline, and
// the slot serves again afterwards.
func TestSharedMemoryAbandonedCall(t *testing.T) {
	m := newTestShm(t, 1, 1<<20)
	b := &rowBackend{release: make(chan struct{})}
	c := connectShm(t, b, m)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.Infer(ctx, &InferRequest{Model: "m", Inputs: map[string]*Tensor{
			"n": FromInt64([]int64{1}, []int64{30000}), "wait": FromInt64([]int64{1}, []int64{1})}})
		done <- err
	}()
	waitLent(t, m)
	st := shmState(m.mem, m.offset(0))
	for deadline := time.Now().Add(30 * time.Second); st.Load()&3 != shmBusy; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the plugin did not claim the slot within 30 s")
		}
	}
	cancel()
	// The backend still runs: another call is answered (inline, the only slot is busy) while
	// the abandoned one has not returned.
	inferRow(t, c, 40000)
	select {
	case err := <-done:
		t.Fatalf("the abandoned call returned (%v) while its backend call still ran", err)
	default:
	}
	close(b.release)
	if err := <-done; CodeOf(err) != CodeCanceled {
		t.Fatalf("abandoned call: err = %v, want Canceled", err)
	}
	if got := st.Load() & 3; got != shmDone && got != shmFree {
		t.Errorf("slot phase after the backend returned = %d, want done or free", got)
	}
	before := m.Stats().Calls
	inferRow(t, c, 40001)
	if m.Stats().Calls != before+1 {
		t.Error("the slot did not serve again after the abandoned call ended")
	}
}

// waitLent waits until every slot of m is lent.
func waitLent(t *testing.T, m *SharedMemory) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		m.mu.Lock()
		lent := len(m.free) == 0
		m.mu.Unlock()
		if lent {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no call borrowed the slot within 30 s")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestSharedMemoryPendingSlot(t *testing.T) {
	m := newTestShm(t, 1, 1<<20)
	seg := &shmSegment{mem: m.mem}
	slot, ticket, ok := m.lend()
	if !ok {
		t.Fatal("no slot to lend")
	}
	st := shmState(m.mem, m.offset(slot))
	// The plugin claims the slot, then the host gives up on the call.
	if !st.CompareAndSwap(ticket<<2|shmLent, ticket<<2|shmBusy) {
		t.Fatal("claim failed")
	}
	m.giveBack(slot, ticket)
	if _, _, ok := m.lend(); ok {
		t.Fatal("a slot the plugin is still writing was lent again")
	}
	st.Store(ticket<<2 | shmDone)
	slot2, ticket2, ok := m.lend()
	if !ok || slot2 != slot || ticket2 == ticket {
		t.Fatalf("lend after the plugin finished = slot %d ticket %d ok %v; want the slot back under a new ticket", slot2, ticket2, ok)
	}
	// A late answer for the old ticket cannot claim the re-lent slot.
	out := map[string]*pb.Tensor{"row": {Dtype: "float32", Shape: []int64{1, 8192}, Data: make([]byte, 8192*4)}}
	seg.writeOutputs(&pb.InferRequest{ShmOffset: m.offset(slot), ShmSize: uint64(m.slotBytes), ShmTicket: ticket}, out)
	if out["row"].InShm {
		t.Fatal("a stale ticket wrote into a slot lent to another call")
	}
	m.giveBack(slot2, ticket2)
}

func TestSharedMemoryRejectsBadRanges(t *testing.T) {
	m := newTestShm(t, 2, 1<<16)
	lo := m.offset(1) + shmHeaderBytes
	for name, p := range map[string]*pb.Tensor{
		"header":        {ShmOffset: m.offset(1), ShmLength: 64},
		"other slot":    {ShmOffset: m.offset(0) + shmHeaderBytes, ShmLength: 64},
		"past the slot": {ShmOffset: lo, ShmLength: 1 << 16},
		"overflow":      {ShmOffset: math.MaxUint64 - 8, ShmLength: 16},
	} {
		if _, err := m.outputFromShm("y", p, 1, nil); err == nil || !strings.Contains(err.Error(), `"y"`) {
			t.Errorf("%s: err = %v, want an error naming the output", name, err)
		}
	}
	if _, err := tensorFromPB("x", &pb.Tensor{Dtype: "float32", Shape: []int64{1}, InShm: true}); CodeOf(err) != CodeInvalidArgument {
		t.Errorf("an input claiming shared memory: err = %v, want InvalidArgument", err)
	}
}

// A caller's OutputBuffers entry is filled instead of a fresh allocation when it is large
// enough, and ignored when it is not.
func TestSharedMemoryOutputBuffers(t *testing.T) {
	m := newTestShm(t, 1, 1<<20)
	c := connectShm(t, &rowBackend{}, m)
	const n = 20000
	for _, tc := range []struct {
		name  string
		buf   []byte
		share bool
	}{{"large enough", make([]byte, 0, n*4+64), true}, {"too small", make([]byte, n*4-4), false}} {
		r, err := c.Infer(context.Background(), &InferRequest{Model: "m",
			Inputs:        map[string]*Tensor{"n": FromInt64([]int64{1}, []int64{n})},
			OutputBuffers: map[string][]byte{"row": tc.buf}})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		checkRow(t, r, n)
		data := r.Outputs["row"].Data
		if shared := &data[0] == &tc.buf[:1][0]; shared != tc.share {
			t.Errorf("%s: the output shares the caller's buffer: %v, want %v", tc.name, shared, tc.share)
		}
	}
}

// The plugin holds the segment's descriptor too. Were it able to shrink the segment, the host's
// next access to a slot would fault (SIGBUS) and take down the host with every other backend:
// a plugin must only ever be able to crash itself.
func TestSharedMemoryCannotBeShrunk(t *testing.T) {
	m := newTestShm(t, 2, 1<<16)
	fd := int(m.File().Fd())
	if err := unix.Ftruncate(fd, 0); err == nil {
		t.Fatal("the segment was truncated to 0 bytes: a plugin could make the host fault on its next call")
	}
	if err := unix.Ftruncate(fd, int64(2*len(m.mem))); err == nil {
		t.Fatal("the segment was grown")
	}
	slot, ticket, ok := m.lend() // touches the slot header: faults if the segment shrank
	if !ok {
		t.Fatal("no slot to lend")
	}
	m.giveBack(slot, ticket)
}

// poolBackend is rowBackend with its outputs in one pair of buffers that it reuses for every
// call and overwrites with NaN (and -1) in InferResponse.Release: what a backend that pools its
// logits does, at its most careless. released counts the Release calls.
type poolBackend struct {
	recordingBackend
	mu       sync.Mutex
	row      []float32
	count    []int64
	released int
}

func (b *poolBackend) Infer(_ context.Context, r *InferRequest) (*InferResponse, error) {
	n, err := r.Inputs["n"].Int64s()
	if err != nil {
		return nil, err
	}
	b.mu.Lock() // held until Release: one call at a time uses the buffers
	b.row = append(b.row[:0], testRow(int(n[0]))...)
	b.count = append(b.count[:0], n[0])
	return &InferResponse{Outputs: map[string]*Tensor{
		"row":   FromFloat32([]int64{1, n[0]}, b.row),
		"count": FromInt64([]int64{1}, b.count),
	}, Release: func() {
		for i := range b.row {
			b.row[i] = float32(math.NaN())
		}
		b.count[0] = -1
		b.released++
		b.mu.Unlock()
	}}, nil
}

// TestInferReleaseAfterCopy checks InferResponse.Release: Serve calls it once per call, and
// only when it no longer needs the outputs' memory — the host receives the values the backend
// returned, not the poison Release writes over them, through shared memory, inline (no segment,
// small outputs, outputs larger than a slot) and in calls from several goroutines.
func TestInferReleaseAfterCopy(t *testing.T) {
	b := &poolBackend{}
	withShm := connectShm(t, b, newTestShm(t, 2, 1<<20))
	conn, _ := plugin.TestPluginGRPCConn(t, false, serverPlugins(b, nil)[ProtocolVersion])
	t.Cleanup(func() { conn.Close() })
	raw, err := conn.Dispense(PluginName)
	if err != nil {
		t.Fatal(err)
	}
	inline := raw.(*Client)
	calls := 0
	for _, c := range []*Client{withShm, inline} {
		for _, n := range []int{50257, 100, 1 << 19} {
			inferRow(t, c, n)
			calls++
		}
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				inferRow(t, withShm, 30000)
			}
		}()
	}
	wg.Wait()
	calls += 20
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.released != calls {
		t.Fatalf("Release called %d times for %d calls", b.released, calls)
	}
}
