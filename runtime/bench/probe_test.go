package bench

import (
	"os"
	"path/filepath"
	"testing"
)

func TestParseCacheSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"491520K", 480 << 20, true}, {"32M", 32 << 20, true}, {"1G", 1 << 30, true}, {"4096", 4096, true},
		{"", 0, false}, {"K", 0, false}, {"-5K", 0, false}, {"0K", 0, false}, {"12Q", 0, false}, {"99999999999G", 0, false},
	} {
		got, err := parseCacheSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseCacheSize(%q) = %d, %v; want %d (ok %v)", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

// TestLastLevelCacheFakeSysfs checks that the highest level wins over a larger lower level and
// that instruction caches are ignored.
func TestLastLevelCacheFakeSysfs(t *testing.T) {
	dir := t.TempDir()
	for i, c := range []struct{ typ, level, size string }{
		{"Data", "1", "48K"}, {"Instruction", "1", "64K"}, {"Unified", "2", "2048K"}, {"Unified", "3", "1536K"}, {"Instruction", "4", "9G"},
	} {
		d := filepath.Join(dir, "index"+string(rune('0'+i)))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, v := range map[string]string{"type": c.typ, "level": c.level, "size": c.size} {
			if err := os.WriteFile(filepath.Join(d, name), []byte(v+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	if size, level := LastLevelCache(dir); size != 1536<<10 || level != 3 {
		t.Errorf("LastLevelCache = %d bytes at level %d; want %d at level 3", size, level, 1536<<10)
	}
	if size, level := LastLevelCache(filepath.Join(dir, "missing")); size != 0 || level != 0 {
		t.Errorf("LastLevelCache of nothing = %d, %d; want 0, 0", size, level)
	}
}

func TestProbeSize(t *testing.T) {
	for _, tc := range []struct{ llc, avail, want int64 }{
		{0, 0, probeMinBytes},                  // unknown cache: the floor
		{32 << 20, 0, probeMinBytes},           // 8× a small cache is under the floor
		{480 << 20, 64 << 30, 8 * (480 << 20)}, // this VM: 3.75 GiB
		{1 << 30, 64 << 30, probeMaxBytes},     // capped
		{480 << 20, 8 << 30, 2 << 30},          // a quarter of the available memory
	} {
		if got := ProbeSize(tc.llc, tc.avail); got != tc.want {
			t.Errorf("ProbeSize(%d, %d) = %d; want %d", tc.llc, tc.avail, got, tc.want)
		}
	}
}

// TestProbeBufferExceedsThisCache checks the probe's sizing on the machine the tests run on:
// its buffer must be several times the last-level cache the system reports, or the probe reads
// from the cache and overstates the memory bandwidth.
func TestProbeBufferExceedsThisCache(t *testing.T) {
	llc, level := LastLevelCache(sysCPU)
	n := ProbeSize(llc, memAvailable())
	t.Logf("last-level cache L%d %d MiB, MemAvailable %d MiB, probe buffer %d MiB", level, llc>>20, memAvailable()>>20, n>>20)
	if llc == 0 {
		t.Logf("%s describes no cache: the buffer is the %d MiB floor", sysCPU, probeMinBytes>>20)
	}
	const minMultiple = 2 // below this the previous pass can still be mostly cached
	if n < minMultiple*llc || n < probeMinBytes && memAvailable() >= 4*probeMinBytes {
		t.Errorf("probe buffer %d MiB is under %d× the %d MiB last-level cache (or under the %d MiB floor)", n>>20, minMultiple, llc>>20, probeMinBytes>>20)
	}
}

func TestPlansNamedBackends(t *testing.T) {
	m := &Models{GPT2: "g", GPT2Int8: "g8", GPT2ONNX: "go", VAE: "v", VAEONNX: "vo"}
	ps := plans(m, Options{Backends: []string{"native", "before=/tmp/x/modelrt-native", "onnxrt", "ort2=/y/modelrt-onnxrt"}, Int8: true})
	type row struct{ name, backend, lm, vae string }
	want := []row{
		{"native", "native", "g", "v"}, {"native-int8", "native", "g8", ""},
		{"before", "/tmp/x/modelrt-native", "g", "v"}, {"before-int8", "/tmp/x/modelrt-native", "g8", ""},
		{"onnxrt", "onnxrt", "go", "vo"}, {"ort2", "/y/modelrt-onnxrt", "go", "vo"},
	}
	if len(ps) != len(want) {
		t.Fatalf("%d plans; want %d: %+v", len(ps), len(want), ps)
	}
	for i, p := range ps {
		if got := (row{p.row.Name, p.row.Backend, p.lmDir, p.vaeDir}); got != want[i] {
			t.Errorf("plan %d = %+v; want %+v", i, got, want[i])
		}
	}
}

func TestLoadAvg(t *testing.T) {
	la := LoadAvg()
	if _, err := os.Stat("/proc/loadavg"); err != nil {
		t.Logf("no /proc/loadavg (%v): zeros expected", err)
		return
	}
	for i, v := range la {
		if v < 0 || v > 1e4 {
			t.Errorf("load average %d = %g; want a plausible figure", i, v)
		}
	}
}

// BenchmarkProbe compares probe buffers in one process: 64 MiB (inside any large last-level
// cache: what a cache-resident read gives), the old fixed 512 MiB (near this VM's 480 MiB L3),
// and ProbeSize's. go test -run ^$ -bench Probe -benchtime 1x ./runtime/bench
func BenchmarkProbe(b *testing.B) {
	for _, c := range []struct {
		name  string
		bytes int
	}{{"64MiB", 64 << 20}, {"512MiB", 512 << 20}, {"auto", ProbeAuto}} {
		b.Run(c.name, func(b *testing.B) {
			var pr Probe
			for range b.N {
				pr = probe(c.bytes)
			}
			b.ReportMetric(pr.GBps, "GB/s")
			b.ReportMetric(float64(pr.Bytes>>20), "MiB")
		})
	}
}

// TestMedian: odd and even counts, unsorted input left as it was, none.
func TestMedian(t *testing.T) {
	v := []float64{62.2, 34.6, 31.4, 35.7, 34.8, 35.6}
	if got := Median(v); got != (34.8+35.6)/2 {
		t.Errorf("Median(%v) = %v, want %v", v, got, (34.8+35.6)/2)
	}
	if v[0] != 62.2 || v[2] != 31.4 {
		t.Errorf("Median reordered its input: %v", v)
	}
	if got := Median(v[:5]); got != 34.8 {
		t.Errorf("Median(%v) = %v, want 34.8", v[:5], got)
	}
	if got := Median(nil); got != 0 {
		t.Errorf("Median(nil) = %v, want 0", got)
	}
}
