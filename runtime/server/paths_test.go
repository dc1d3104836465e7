package server

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/modelrt/modelrt/pipelines"
)

// TestGuardPaths: which inputs are fixed, which may carry an image, and which pipelines are
// refused, for each way an input can reach a file.
func TestGuardPaths(t *testing.T) {
	cases := []struct {
		name, body     string
		locked, images []string
		refused        string
	}{
		{"direct image.load path", `stage "l" {
  use  = "image.load"
  path = input.a
}`, []string{"a"}, []string{"a"}, ""},
		{"templated path", `stage "l" {
  use  = "image.load"
  path = "${input.a}/x.png"
}`, []string{"a"}, nil, ""},
		{"image.save path", `stage "l" {
  use  = "image.load"
  path = "x.png"
}
stage "s" {
  use   = "image.save"
  image = stage.l.image
  path  = input.b
}`, []string{"b"}, nil, ""},
		{"file() in an output", `output "o" {
  value = file(input.a)
}`, []string{"a"}, nil, ""},
		{"env() in a nested call", `output "o" {
  value = upper(env(lower(input.b)))
}`, []string{"b"}, nil, ""},
		{"image input also read by env()", `stage "l" {
  use  = "image.load"
  path = input.a
}
output "o" {
  value = env(input.a)
}`, []string{"a"}, nil, ""},
		{"path from a stage output", `stage "l" {
  use  = "image.load"
  path = "x.png"
}
stage "s" {
  use   = "image.save"
  image = stage.l.image
  path  = "${stage.l.image == null ? "a" : "b"}.png"
}`, nil, nil, "depends on stage outputs"},
		{"plain inputs", `output "o" {
  value = "${input.a}${input.b}"
}`, nil, nil, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := fmt.Sprintf(`pipeline "p" {
input "a" {
  type    = string
  default = "a"
}
input "b" {
  type    = string
  default = "b"
}
%s
}
`, tc.body)
			cfg, diags := pipelines.LoadSource("p.hcl", []byte(src), pipelines.LoadOptions{NoPathCheck: true})
			if diags.HasErrors() {
				t.Fatalf("load: %s\n%s", diags.Error(), src)
			}
			g := guardPaths(cfg.Pipelines["p"])
			locked := slices.Sorted(maps.Keys(g.locked))
			images := slices.Sorted(maps.Keys(g.images))
			if !slices.Equal(locked, tc.locked) || !slices.Equal(images, tc.images) {
				t.Errorf("locked %v images %v, want %v and %v", locked, images, tc.locked, tc.images)
			}
			if tc.refused == "" && g.refused != "" || !strings.Contains(g.refused, tc.refused) {
				t.Errorf("refused = %q, want %q", g.refused, tc.refused)
			}
		})
	}
}
