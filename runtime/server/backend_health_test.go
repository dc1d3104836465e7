package server

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/modelrt/modelrt/runtime/plugin"
)

// TestCrashingBackendRecovers kills the backend process more than MaxRestarts times in a row:
// /healthz and the metrics must say it failed, why, and when the next restart is, requests get
// 503 — and the host must keep restarting it, so that it serves again without a reload
// (formerly it stayed failed, and every model answered 503, until SIGHUP).
func TestCrashingBackendRecovers(t *testing.T) {
	s, ts := newTestServer(t, Options{})
	c := ts.Client()
	e := s.Engine()
	type health struct {
		Status   string `json:"status"`
		Backends []struct {
			Name          string `json:"name"`
			State         string `json:"state"`
			CrashesInARow int    `json:"crashes_in_a_row"`
			LastError     string `json:"last_error"`
			NextRestart   string `json:"next_restart"`
		} `json:"backends"`
	}
	healthz := func() (int, health) {
		status, _, body := call(t, c, "GET", ts.URL+"/healthz", nil)
		var h health
		if err := json.Unmarshal(body, &h); err != nil || len(h.Backends) != 1 {
			t.Fatalf("/healthz: %v: %s", err, body)
		}
		return status, h
	}
	for kill := 1; kill <= plugin.DefaultMaxRestarts+1; kill++ {
		b := e.Backends()[0]
		if !settle(20*time.Second, func() bool { b = e.Backends()[0]; return b.State == "running" }) {
			t.Fatalf("before kill %d the backend is not running: %+v", kill, b)
		}
		p, err := os.FindProcess(b.Pid)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Kill(); err != nil {
			t.Fatalf("kill %d: %v", b.Pid, err)
		}
		if !settle(10*time.Second, func() bool { return e.Backends()[0].State != "running" }) {
			t.Fatalf("kill %d went unnoticed: %+v", kill, e.Backends()[0])
		}
	}
	if !settle(10*time.Second, func() bool { return e.Backends()[0].State == "failed" }) {
		t.Fatalf("after %d crashes in a row: %+v, want failed", plugin.DefaultMaxRestarts+1, e.Backends()[0])
	}
	status, h := healthz()
	hb := h.Backends[0]
	if status != 503 || hb.State != "failed" || hb.CrashesInARow != plugin.DefaultMaxRestarts+1 || !strings.Contains(hb.LastError, "crashed") || hb.NextRestart == "" {
		t.Errorf("/healthz while failed: %d %+v; want 503, failed, %d crashes in a row, the error and the next restart", status, h, plugin.DefaultMaxRestarts+1)
	}
	if next, err := time.Parse(time.RFC3339Nano, hb.NextRestart); err != nil || time.Until(next) > plugin.MaxRestartBackoff {
		t.Errorf("next_restart %q: %v; want a time within %v", hb.NextRestart, err, plugin.MaxRestartBackoff)
	}
	_, _, metrics := call(t, c, "GET", ts.URL+"/metrics", nil)
	for _, want := range []string{`modelrt_plugin_up{backend="native"} 0`, `modelrt_plugin_crashes_in_a_row{backend="native"} 6`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	code, _, body := call(t, c, "POST", ts.URL+"/v2/models/vae/infer", `{"inputs":[{"name":"latent","datatype":"FP32","shape":[1,4,1,1],"data":[0,0,0,0]}]}`)
	if code != 503 {
		t.Errorf("infer while failed: %d %s, want 503", code, body)
	}
	// The host keeps trying: the next restart succeeds and everything serves again.
	if !settle(plugin.MaxRestartBackoff+20*time.Second, func() bool { return e.Backends()[0].State == "running" }) {
		t.Fatalf("the backend did not come back by itself: %+v", e.Backends()[0])
	}
	if status, h := healthz(); status != 200 || h.Backends[0].LastError != "" {
		t.Errorf("/healthz after recovery: %d %+v", status, h)
	}
	code, _, body = call(t, c, "POST", ts.URL+"/v2/models/vae/infer", `{"inputs":[{"name":"latent","datatype":"FP32","shape":[1,4,1,1],"data":[0,0,0,0]}]}`)
	if code != 200 {
		t.Errorf("infer after recovery: %d %s", code, body)
	}
	_, _, metrics = call(t, c, "GET", ts.URL+"/metrics", nil)
	if !strings.Contains(string(metrics), `modelrt_plugin_up{backend="native"} 1`) {
		t.Errorf("metrics after recovery lack modelrt_plugin_up 1")
	}
}
