package bench

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/modelrt/modelrt/native/kernels"
)

// ProbeAuto as Shape.ProbeBytes sizes the bandwidth probe's buffer from the last-level cache
// the system reports (ProbeSize).
const ProbeAuto = -1

const (
	// probeCacheMultiple is how many times the last-level cache the probe's buffer spans: a
	// stream over 8× the cache finds almost nothing of the previous pass there, whatever the
	// replacement policy keeps (a buffer barely larger than the cache — the old 512 MiB against
	// this VM's 480 MiB L3 — read mostly from the cache and reported twice the DRAM bandwidth).
	probeCacheMultiple = 8
	// probeMinBytes is the smallest buffer, for systems that report no cache or a small one.
	probeMinBytes = 1 << 30
	// probeMaxBytes bounds the buffer, as does a quarter of the available memory.
	probeMaxBytes = 4 << 30
	// ProbePasses is how many timed passes the probe makes; it keeps the best, so that a pass
	// slowed by other work on the machine does not set the ceiling.
	ProbePasses = 3
)

// sysCPU is where Linux describes CPU 0's caches.
const sysCPU = "/sys/devices/system/cpu/cpu0/cache"

// LastLevelCache returns the size in bytes of the highest-level data or unified cache that
// dir (a /sys/devices/system/cpu/cpuN/cache directory) describes, and its level; 0, 0 when
// none is described.
func LastLevelCache(dir string) (size int64, level int) {
	idx, _ := filepath.Glob(filepath.Join(dir, "index*"))
	for _, d := range idx {
		read := func(name string) string {
			b, _ := os.ReadFile(filepath.Join(d, name))
			return string(bytes.TrimSpace(b))
		}
		if t := read("type"); t != "Data" && t != "Unified" {
			continue
		}
		l, err1 := strconv.Atoi(read("level"))
		s, err2 := parseCacheSize(read("size"))
		if err1 != nil || err2 != nil {
			continue
		}
		if l > level || (l == level && s > size) {
			size, level = s, l
		}
	}
	return size, level
}

// parseCacheSize reads sysfs's cache size, "491520K" (K, M or G; no suffix is bytes).
func parseCacheSize(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "K"):
		mult, s = 1<<10, s[:len(s)-1]
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, s[:len(s)-1]
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, s[:len(s)-1]
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v <= 0 || v > 1<<40/mult {
		return 0, fmt.Errorf("bench: cache size %q", s)
	}
	return v * mult, nil
}

// memAvailable returns /proc/meminfo's MemAvailable in bytes (0 when unknown).
func memAvailable() int64 {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for line := range bytes.Lines(data) {
		if rest, ok := bytes.CutPrefix(line, []byte("MemAvailable:")); ok {
			f := bytes.Fields(rest)
			if len(f) == 2 && string(f[1]) == "kB" {
				if kb, err := strconv.ParseInt(string(f[0]), 10, 64); err == nil && kb > 0 {
					return kb << 10
				}
			}
		}
	}
	return 0
}

// ProbeSize is the probe buffer for a last-level cache of llc bytes with avail bytes of memory
// available (0: unknown): probeCacheMultiple × llc, at least probeMinBytes, at most
// probeMaxBytes and a quarter of avail.
func ProbeSize(llc, avail int64) int64 {
	n := max(probeCacheMultiple*llc, probeMinBytes)
	n = min(n, probeMaxBytes)
	if avail > 0 {
		n = min(n, avail/4)
	}
	return n
}

// Probe is what the bandwidth probe measured and over what.
type Probe struct {
	GBps     float64
	Bytes    int64 // buffer read per pass
	LLCBytes int64 // last-level cache reported by the system (0: unknown)
	Passes   int
}

// probe runs kernels.ReadBandwidth — the decode's dot-product kernel on the decode's worker
// pool, every worker streaming its share of the buffer once per pass — over bytes (ProbeAuto:
// ProbeSize of this machine), best of ProbePasses. The buffer is the memory a float32 GPT-2
// keeps its weights in (kernels.NewHugeMem: an anonymous mapping advised for huge pages),
// populated by the kernel in one call (gigabytes of page faults one by one took half a minute
// on a loaded machine), filled with ones so that every page is its own, and unmapped after:
// nothing is left for the garbage collector.
func probe(bytes int) Probe {
	llc, _ := LastLevelCache(sysCPU)
	n := int64(bytes)
	if bytes == ProbeAuto {
		n = ProbeSize(llc, memAvailable())
	}
	n = (n + 1<<20 - 1) >> 20 << 20 // whole MiB, as the kernel reads them
	pr := Probe{Bytes: n, LLCBytes: llc, Passes: ProbePasses}
	pr.GBps = kernels.ReadBandwidth(int(n), ProbePasses) / 1e9
	return pr
}

// Median returns the median of v (the mean of the middle two for an even count; 0 for none),
// leaving v unchanged.
func Median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(v))
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
