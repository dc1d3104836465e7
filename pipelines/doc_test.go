package pipelines

import (
	"flag"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the generated stage catalogue in docs/pipelines.md")

const (
	docPath    = "../docs/pipelines.md"
	beginMark  = "<!-- catalogue:begin"
	endMark    = "<!-- catalogue:end -->"
	markerTail = "-->\n"
)

// TestCatalogueDoc keeps the catalogue section of docs/pipelines.md equal to
// CatalogueMarkdown, so the reference cannot drift from the code.
func TestCatalogueDoc(t *testing.T) {
	raw, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatalf("read %s: %v", docPath, err)
	}
	doc := string(raw)
	b := strings.Index(doc, beginMark)
	e := strings.Index(doc, endMark)
	if b < 0 || e < b {
		t.Fatalf("%s lacks the %q … %q markers", docPath, beginMark, endMark)
	}
	start := b + strings.Index(doc[b:], markerTail) + len(markerTail)
	want := "\n" + CatalogueMarkdown()
	if doc[start:e] == want {
		return
	}
	if !*update {
		t.Fatalf("%s: the stage catalogue differs from CatalogueMarkdown(); run go test ./pipelines -run TestCatalogueDoc -update", docPath)
	}
	if err := os.WriteFile(docPath, []byte(doc[:start]+want+doc[e:]), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestDocExample loads the example that opens docs/pipelines.md, so the
// first thing a reader copies is valid.
func TestDocExample(t *testing.T) {
	raw, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	b := strings.Index(doc, "```hcl\n")
	e := strings.Index(doc[b+7:], "```")
	if b < 0 || e < 0 {
		t.Fatalf("%s has no hcl example", docPath)
	}
	src := doc[b+7 : b+7+e]
	cfg, diags := LoadSource(fixtures+"doc-example.hcl", []byte(src), LoadOptions{BackendSchemas: testSchemas, NoPathCheck: true})
	if len(diags) > 0 {
		t.Fatalf("the example of %s does not load:\n%s", docPath, render(t, diags, cfg.Files))
	}
}
