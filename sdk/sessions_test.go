package sdk

import (
	"slices"
	"strconv"
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

func TestModelTable(t *testing.T) {
	type model struct{ name string }
	var freedModels, freedSessions []string
	tab := NewModelTable("m", func(m *model) { freedModels = append(freedModels, m.name) }, func(s *string) { freedSessions = append(freedSessions, *s) })
	ctx := t.Context()
	if _, err := tab.Get("a"); CodeOf(err) != CodeNotFound {
		t.Errorf("Get before Put: %v, want NotFound", err)
	}
	a1 := &model{"a1"}
	tab.Put("a", a1)
	if m, err := tab.Get("a"); err != nil || m != a1 {
		t.Errorf("Get = %v, %v", m, err)
	}
	open := func(name string, batch int) (string, error) {
		r, err := tab.Open(&OpenSessionRequest{Model: name, BatchSize: batch}, func(m *model, b int) (*string, error) {
			s := m.name + "/" + strconv.Itoa(b)
			return &s, nil
		})
		if err != nil {
			return "", err
		}
		return r.Session, nil
	}
	id, err := open("a", 0)
	if err != nil || id != "m-1" {
		t.Fatalf("Open = %q, %v", id, err)
	}
	if s, err := tab.Session(id, "a"); err != nil || *s != "a1/1" {
		t.Errorf("Session = %v, %v", s, err)
	}
	for _, c := range []struct {
		model string
		batch int
		code  Code
	}{{"b", 1, CodeNotFound}, {"a", -1, CodeInvalidArgument}} {
		if _, err := open(c.model, c.batch); CodeOf(err) != c.code {
			t.Errorf("Open(%q, %d): %v, want %v", c.model, c.batch, err, c.code)
		}
	}
	tab.SetMaxSessions(1)
	if _, err := open("a", 1); CodeOf(err) != CodeResourceExhausted {
		t.Errorf("Open beyond SetMaxSessions(1): %v, want ResourceExhausted", err)
	}
	tab.SetMaxSessions(0)
	if _, err := open("a", 2); err != nil {
		t.Fatal(err)
	}
	st := tab.Report(func(m *model) ModelStats { return ModelStats{Task: "t"} })
	if st.OpenSessions != 2 || len(st.Models) != 1 || st.Models[0].Name != "a" || st.Models[0].OpenSessions != 2 || st.Models[0].Task != "t" {
		t.Errorf("Report = %+v", st)
	}
	// Replacing a model frees it and its sessions.
	tab.Put("a", &model{"a2"})
	if !slices.Equal(freedModels, []string{"a1"}) || len(freedSessions) != 2 {
		t.Errorf("after replacing: freed models %v, sessions %v", freedModels, freedSessions)
	}
	if _, err := tab.Session(id, "a"); CodeOf(err) != CodeNotFound {
		t.Errorf("session of a replaced model: %v, want NotFound", err)
	}
	id, _ = open("a", 1)
	if _, err := tab.CloseSession(ctx, &CloseSessionRequest{Session: id}); err != nil {
		t.Fatal(err)
	}
	if _, err := tab.CloseSession(ctx, &CloseSessionRequest{Session: id}); CodeOf(err) != CodeNotFound {
		t.Errorf("second CloseSession: %v, want NotFound", err)
	}
	open("a", 1)
	if _, err := tab.UnloadModel(ctx, &UnloadModelRequest{Name: "a"}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(freedModels, []string{"a1", "a2"}) || !slices.Equal(freedSessions[2:], []string{"a2/1", "a2/1"}) {
		t.Errorf("after unloading: freed models %v, sessions %v", freedModels, freedSessions)
	}
	if _, err := tab.UnloadModel(ctx, &UnloadModelRequest{Name: "a"}); CodeOf(err) != CodeNotFound {
		t.Errorf("second UnloadModel: %v, want NotFound", err)
	}
	// A model replaced while a session was being opened for it gets no session.
	tab.Put("c", &model{"c1"})
	_, err = tab.Open(&OpenSessionRequest{Model: "c"}, func(m *model, b int) (*string, error) {
		tab.Put("c", &model{"c2"})
		s := "c1-late"
		return &s, nil
	})
	if CodeOf(err) != CodeNotFound || freedSessions[len(freedSessions)-1] != "c1-late" {
		t.Errorf("Open racing a reload: %v (freed %v), want NotFound and the state freed", err, freedSessions)
	}
}
