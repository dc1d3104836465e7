package sdk

import (
	"sync"
	"testing"
)

func TestSessionTable(t *testing.T) {
	tab := NewSessionTable[*int]("x")
	one, two := 1, 2
	a := tab.Add("m1", &one)
	b := tab.Add("m2", &two)
	if a == b || a != "x-1" {
		t.Fatalf("ids %q %q", a, b)
	}
	if s, err := tab.Get(a, "m1"); err != nil || *s != 1 {
		t.Errorf("Get = %v, %v", s, err)
	}
	if _, err := tab.Get(a, "m2"); CodeOf(err) != CodeInvalidArgument {
		t.Errorf("Get with another model: %v, want InvalidArgument", err)
	}
	if _, err := tab.Get("x-9", ""); CodeOf(err) != CodeNotFound {
		t.Errorf("Get unknown: %v, want NotFound", err)
	}
	if tab.Count("") != 2 || tab.Count("m1") != 1 {
		t.Errorf("Count = %d, %d", tab.Count(""), tab.Count("m1"))
	}
	if got := tab.RemoveModel("m2"); len(got) != 1 || *got[0] != 2 {
		t.Errorf("RemoveModel = %v", got)
	}
	if _, err := tab.Remove(a); err != nil {
		t.Error(err)
	}
	if _, err := tab.Remove(a); CodeOf(err) != CodeNotFound {
		t.Errorf("second Remove: %v, want NotFound", err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			id := tab.Add("m", &one)
			tab.Get(id, "m")
			tab.Remove(id)
		})
	}
	wg.Wait()
	if tab.Count("") != 0 {
		t.Errorf("%d sessions left", tab.Count(""))
	}
}

func TestBatchSize(t *testing.T) {
	for in, want := range map[int]int{0: 1, 1: 1, 8: 8, MaxBatchSize: MaxBatchSize} {
		if got, err := BatchSize(&OpenSessionRequest{BatchSize: in}); err != nil || got != want {
			t.Errorf("BatchSize(%d) = %d, %v", in, got, err)
		}
	}
	for _, in := range []int{-1, MaxBatchSize + 1} {
		if _, err := BatchSize(&OpenSessionRequest{BatchSize: in}); CodeOf(err) != CodeInvalidArgument {
			t.Errorf("BatchSize(%d): %v, want InvalidArgument", in, err)
		}
	}
}
