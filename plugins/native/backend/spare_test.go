package backend

import "testing"

// TestLogitsSpare checks the logits buffer the plugin reuses: a released buffer is the next
// call's when large enough (and then no longer the spare, so two calls never share one), a
// smaller one does not replace a larger spare, and one over maxSpareLogits is not kept.
func TestLogitsSpare(t *testing.T) {
	m := &model{}
	a := m.logitsBuf(1000)
	m.release(a)
	if b := m.logitsBuf(600); &b[0] != &a[0] || len(b) != 600 {
		t.Fatal("a released buffer large enough was not reused")
	}
	if c := m.logitsBuf(600); &c[0] == &a[0] {
		t.Fatal("the spare was handed out twice")
	}
	m.release(a)
	m.release(make([]float32, 10)) // smaller: keeps a
	if b := m.logitsBuf(1000); &b[0] != &a[0] {
		t.Fatal("a smaller released buffer replaced the larger spare")
	}
	m.release(a)
	if b := m.logitsBuf(2000); &b[0] == &a[0] || len(b) != 2000 {
		t.Fatal("a spare too small was handed out")
	}
	big := make([]float32, maxSpareLogits+1)
	m.release(big)
	if m.spare != nil && &m.spare[:1][0] == &big[0] {
		t.Fatalf("a buffer of %d logits (over %d) became the spare", len(big), maxSpareLogits)
	}
}
