package conformance

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/modelrt/modelrt/sdk"
)

// Refusal is a request a backend must refuse with InvalidArgument (docs/sdk.md, Limits): Want
// lists what the message must name — the input and the limit it exceeds.
type Refusal struct {
	Name    string
	Request *sdk.InferRequest
	Want    []string
}

// CheckRefusals sends each request to b (an in-process backend or a *plugin.Plugin) and reports
// every one that is not InvalidArgument naming all of its Want.
func CheckRefusals(t testing.TB, b sdk.Backend, refusals []Refusal) {
	t.Helper()
	for _, r := range refusals {
		_, err := b.Infer(context.Background(), r.Request)
		if sdk.CodeOf(err) != sdk.CodeInvalidArgument {
			t.Errorf("%s: err = %v, want InvalidArgument", r.Name, err)
			continue
		}
		for _, w := range r.Want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q does not name %q", r.Name, err, w)
			}
		}
	}
}

// IDs is an "input_ids" input of batch rows of n copies of id.
func IDs(batch, n int, id int64) map[string]*sdk.Tensor {
	x := make([]int64, batch*n)
	for i := range x {
		x[i] = id
	}
	return map[string]*sdk.Tensor{"input_ids": sdk.FromInt64([]int64{int64(batch), int64(n)}, x)}
}

// Zeros is an input called name: a float32 tensor of zeros of the given shape.
func Zeros(name string, shape ...int64) map[string]*sdk.Tensor {
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	return map[string]*sdk.Tensor{name: sdk.FromFloat32(shape, make([]float32, n))}
}

// ProcessCPU is the user + system CPU time a process has used so far (Linux: /proc/PID/stat),
// for tests that check a plugin stopped working after a call was cancelled.
func ProcessCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name (in parentheses, which may hold spaces) start with the state
	// (field 3); utime and stime are fields 14 and 15, in clock ticks of 1/100 s (USER_HZ).
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields after the command name", pid, len(f))
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: utime %q, stime %q", pid, f[11], f[12])
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}

// PeakRSS is a process's peak resident set (Linux: VmHWM of /proc/PID/status), in bytes.
func PeakRSS(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/%d/status: VmHWM %q", pid, rest)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no VmHWM", pid)
}

// Cancelled is what CancelWhenBusy saw of a call cancelled in flight.
type Cancelled struct {
	Err        error         // what the call returned
	AfterCPU   time.Duration // the process's CPU time from the cancel until the call returned
	IdleCPU    time.Duration // its CPU time in the idle window after the call returned
	Wall       time.Duration // wall time from the cancel until the call returned
	BeforeCPU  time.Duration // its CPU time from the call's start until the cancel
	IdleWindow time.Duration
}

// CancelWhenBusy runs call in the background, cancels its context once the plugin process pid
// has used busy of CPU time on it, waits for the call to return (at most a minute) and then
// watches the process for idle. It is for tests that a backend stops the work of a cancelled
// call rather than only the caller's wait. Errors are about the measurement (no /proc, the
// call ended before it could be cancelled, or never returned).
func CancelWhenBusy(pid int, busy, idle time.Duration, call func(context.Context) error) (*Cancelled, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start, err := ProcessCPU(pid)
	if err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- call(ctx) }()
	var now time.Duration
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		if now, err = ProcessCPU(pid); err != nil {
			return nil, err
		}
		if now-start >= busy {
			break
		}
		select {
		case err := <-done:
			return nil, fmt.Errorf("the call ended (%v) after %v of CPU, before it could be cancelled at %v", err, now-start, busy)
		default:
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the process used only %v of CPU in a minute", now-start)
		}
	}
	cancel()
	c := &Cancelled{BeforeCPU: now - start, IdleWindow: idle}
	cancelled := time.Now()
	select {
	case c.Err = <-done:
	case <-time.After(time.Minute):
		return nil, fmt.Errorf("the cancelled call did not return within a minute")
	}
	c.Wall = time.Since(cancelled)
	returned, err := ProcessCPU(pid)
	if err != nil {
		return nil, err
	}
	c.AfterCPU = returned - now
	time.Sleep(idle)
	end, err := ProcessCPU(pid)
	if err != nil {
		return nil, err
	}
	c.IdleCPU = end - returned
	return c, nil
}
