package pipelines

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLoad feeds arbitrary file contents to the loader. Whatever the input,
// Load must not panic, every diagnostic must point into the file (or have no
// subject), the diagnostics must render, and a configuration without errors
// must have every stage after the stages it depends on.
func FuzzLoad(f *testing.F) {
	err := filepath.WalkDir(fixtures, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".hcl") {
			return err
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		f.Add(src)
		return nil
	})
	if err != nil {
		f.Fatalf("seed corpus: %v", err)
	}
	// The fuzzed file sits beside the good fixtures' models so that
	// references to ../../models resolve as often as in the seeds.
	name := filepath.Join(fixtures, "bad", "fuzz.hcl")
	f.Fuzz(func(t *testing.T, src []byte) {
		cfg, diags := LoadSource(name, src, LoadOptions{BackendSchemas: testSchemas, NoPathCheck: true})
		if cfg == nil {
			t.Fatal("nil Config")
		}
		lines := bytes.Count(src, []byte("\n")) + 1
		for _, d := range diags {
			if d.Subject == nil {
				continue
			}
			if d.Subject.Filename != name && !strings.HasPrefix(d.Subject.Filename, "<") {
				t.Fatalf("diagnostic %q points at %s, not the loaded file", d.Summary, d.Subject.Filename)
			}
			if d.Subject.Filename == name && (d.Subject.Start.Line < 1 || d.Subject.Start.Line > lines) {
				t.Fatalf("diagnostic %q at line %d of a %d-line file", d.Summary, d.Subject.Start.Line, lines)
			}
		}
		var out bytes.Buffer
		if err := WriteDiagnostics(&out, diags, cfg.Files); err != nil {
			t.Fatalf("WriteDiagnostics: %v", err)
		}
		if diags.HasErrors() {
			return
		}
		for _, p := range cfg.Pipelines {
			seen := map[string]bool{}
			for _, s := range p.Stages {
				for _, d := range s.DependsOn {
					if !seen[d] {
						t.Fatalf("pipeline %q: stage %q runs before its dependency %q", p.Name, s.Name, d)
					}
				}
				seen[s.Name] = true
			}
		}
	})
}
