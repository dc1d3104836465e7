package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConformanceRepositoryCases runs `modelrt conformance --cases testdata/conformance` as CI
// does: every case passes on both plugins, each backend passes some, and nothing fails.
func TestConformanceRepositoryCases(t *testing.T) {
	out, stderr, err := modelrt(t, "conformance", "--cases", "../../testdata/conformance", "--json", "--quiet")
	if err != nil {
		t.Fatalf("conformance: %v\n%s\n%s", err, stderr, out)
	}
	var rep struct {
		Rows []struct {
			Case, Backend, Result string
			MaxAbsErr             float64 `json:"max_abs_err"`
		}
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("parse: %v", err)
	}
	passed := map[string]int{}
	for _, r := range rep.Rows {
		switch r.Result {
		case "pass":
			passed[r.Backend]++
		case "FAIL":
			t.Errorf("%s on %s failed (max abs err %g)", r.Case, r.Backend, r.MaxAbsErr)
		}
	}
	if passed["native"] < 10 || passed["onnxrt"] < 10 {
		t.Errorf("passes per backend = %v; want both backends to run the repository's cases", passed)
	}
}

// TestConformanceFailsOnAWrongExpectation: a case whose expected ids are wrong makes the verb
// exit 1 and name the case.
func TestConformanceFailsOnAWrongExpectation(t *testing.T) {
	src, err := os.ReadFile("../../testdata/conformance/gpt2-odd-generate.json")
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(src, &c); err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs("../../testdata/conformance")
	c["model"] = filepath.Join(abs, c["model"].(string))
	c["name"] = "wrong-ids"
	ids := c["expected"].(map[string]any)["ids"].(map[string]any)["data"].([]any)
	ids[len(ids)-1] = ids[len(ids)-1].(float64) + 1
	dir := t.TempDir()
	b, _ := json.Marshal(c)
	if err := os.WriteFile(filepath.Join(dir, "wrong.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	out, stderr, err := modelrt(t, "conformance", "--cases", dir, "--backends", "native", "--quiet")
	if err == nil {
		t.Fatalf("conformance passed a wrong expectation:\n%s", out)
	}
	if !strings.Contains(out+stderr, "wrong-ids") {
		t.Errorf("output does not name the failing case:\n%s\n%s", out, stderr)
	}
}
