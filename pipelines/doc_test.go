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
