package conformance

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/modelrt/modelrt/conformance/internal/toylm"
	nativebackend "github.com/modelrt/modelrt/plugins/native/backend"
	"github.com/modelrt/modelrt/sdk"
)

// flawTarget names the check each flaw of toylm must be caught by.
var flawTarget = map[toylm.Flaw]string{
	toylm.FlawDescribe:    CheckDescribe,
	toylm.FlawInvalid:     CheckInvalid,
	toylm.FlawNotFound:    CheckNotFound,
	toylm.FlawCancel:      CheckCancel,
	toylm.FlawSessions:    CheckSessions,
	toylm.FlawLeak:        CheckUnload,
	toylm.FlawWornOut:     CheckSequential,
	toylm.FlawGoroutines:  CheckSequential,
	toylm.FlawSessionLeak: CheckSequential,
	toylm.FlawCallLeak:    CheckSequential,
}

// TestContractToyCorrect: the flawless toy passes every check, in-process and as a plugin.
func TestContractToyCorrect(t *testing.T) {
	t.Run("in-process", func(t *testing.T) {
		CheckBackend(t, Contract{Backend: toylm.New(toylm.None), Model: t.TempDir(), Task: sdk.TaskCausalLM})
	})
	t.Run("plugin", func(t *testing.T) {
		needPlugins(t)
		CheckBackend(t, Contract{Plugin: filepath.Join(binDir, "modelrt-toylm"), Model: t.TempDir(), Task: sdk.TaskCausalLM, Logger: testLogger(t)})
	})
}

// TestContractCatchesFlaws: each deliberately broken toy fails the check aimed at its flaw.
func TestContractCatchesFlaws(t *testing.T) {
	for _, f := range toylm.Flaws {
		t.Run(string(f), func(t *testing.T) {
			want := flawTarget[f]
			if want == "" {
				t.Fatalf("flaw %s has no target check", f)
			}
			res := VerifyContract(t, Contract{Backend: toylm.New(f), Model: t.TempDir(), Task: sdk.TaskCausalLM})
			i := slices.IndexFunc(res, func(r ContractResult) bool { return r.Name == want })
			if i < 0 {
				t.Fatalf("no check %s ran", want)
			}
			if res[i].Err == nil {
				t.Errorf("flaw %s: check %s passed; it must fail (notes: %v, skipped: %q)", f, want, res[i].Notes, res[i].Skipped)
			} else {
				t.Logf("caught by %s: %v", want, res[i].Err)
			}
		})
	}
}

// TestContractPluginCatchesFlaw: a flaw is caught across the process boundary too.
func TestContractPluginCatchesFlaw(t *testing.T) {
	needPlugins(t)
	for _, f := range []toylm.Flaw{toylm.FlawSessions, toylm.FlawLeak, toylm.FlawNotFound} {
		t.Run(string(f), func(t *testing.T) {
			res := VerifyContract(t, Contract{Plugin: filepath.Join(binDir, "modelrt-toylm"), Env: []string{"TOYLM_FLAW=" + string(f)},
				Model: t.TempDir(), Task: sdk.TaskCausalLM, Calls: 50, Logger: testLogger(t)})
			for _, r := range res {
				if r.Name == flawTarget[f] && r.Err == nil {
					t.Errorf("plugin with flaw %s: check %s passed; it must fail", f, r.Name)
				}
			}
		})
	}
}

// TestContractNative runs the contract on the native backend in-process, for GPT-2 and VAE.
func TestContractNative(t *testing.T) {
	t.Run("causal-lm", func(t *testing.T) {
		CheckBackend(t, Contract{Backend: nativebackend.New(), Model: "../testdata/models/gpt2-odd", Task: sdk.TaskCausalLM})
	})
	t.Run("vae", func(t *testing.T) {
		CheckBackend(t, Contract{Backend: nativebackend.New(), Model: "../testdata/models/vae-tiny", Task: sdk.TaskVAE, Calls: 200})
	})
}

// contractModels are the models the contract is checked with on each repository backend.
var contractModels = map[string][]struct{ dir, task string }{
	"native": {{"../testdata/models/gpt2-odd", sdk.TaskCausalLM}, {"../testdata/models/vae-tiny", sdk.TaskVAE}},
	"onnxrt": {{"../testdata/models/gpt2-odd-onnx-optimum-op17", sdk.TaskCausalLM}, {"../testdata/conformance/models/vae-tiny-dual", sdk.TaskVAE}},
}

// TestContractPlugins runs the contract on the repository's backends as real plugin processes.
func TestContractPlugins(t *testing.T) {
	needPlugins(t)
	for name, why := range buildErrs {
		t.Logf("backend %s not checked: %s (it must build when CI=true)", name, why)
	}
	for _, p := range plugins {
		for _, m := range contractModels[p.Name] {
			t.Run(p.Name+"/"+filepath.Base(m.dir), func(t *testing.T) {
				CheckBackend(t, Contract{Plugin: p.Path, Model: m.dir, Task: m.task, Logger: testLogger(t)})
			})
		}
	}
}
