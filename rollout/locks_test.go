package rollout

import (
	"context"
	"encoding/json"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// stalledMirror is a Kubernetes status write that does not come back
// until the test lets it: an API server that stopped answering. With name
// set, only that rollout's writes stall; the others return at once.
type stalledMirror struct {
	name    string
	entered chan Status
	release chan struct{}
	calls   atomic.Int64
	// returned counts the stalled writes that came back (released or
	// cancelled).
	returned atomic.Int64
}

func (m *stalledMirror) SaveRollout(ctx context.Context, st Status) error {
	if m.name != "" && st.Name != m.name {
		return nil
	}
	m.calls.Add(1)
	select {
	case m.entered <- st:
	default:
	}
	defer m.returned.Add(1)
	select {
	case <-m.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TestReadersDoNotWaitForAStalledStateWrite stalls the engine's state
// write (the mirror of rollout state into Kubernetes) in the middle of
// starting a rollout: GET /api/v1/rollouts/{ns}/{name} and the list answer
// at once, with the new state, and alerting's FindByVersion too; once the
// write returns, the rollout goes on and its routes are applied.
func TestReadersDoNotWaitForAStalledStateWrite(t *testing.T) {
	r := newRig(t)
	m := &stalledMirror{entered: make(chan Status, 1), release: make(chan struct{})}
	r.startEngine()
	r.engine.SetMirror(m)
	api := r.serveAPI()
	r.apply(`apiVersion: meshlens.io/v1alpha1
kind: Rollout
metadata: {name: echo, namespace: default}
spec:
  service: echo
  stable: stable
  candidate: canary
  strategy: {canary: {steps: [10, 50, 100]}}
`)
	var stalled Status
	select {
	case stalled = <-m.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the engine never wrote the rollout's state")
	}
	defer close(m.release)
	// The write returns only when the test lets it (below), so a reader
	// that waited for it would never answer: answering at all, before the
	// release, is the behaviour. The client's timeout only catches that
	// hang; how fast the answer came is logged, not asserted (a loaded
	// machine is slow without the engine being wrong).
	start := time.Now()
	client := &http.Client{Timeout: 2 * time.Minute}
	resp, err := client.Get(api + "/rollouts/default/echo")
	took := time.Since(start)
	if err != nil {
		t.Fatalf("GET the rollout while its state write is stalled: %v after %v", err, took)
	}
	defer resp.Body.Close()
	var st Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET the rollout while its state write is stalled: %d %v", resp.StatusCode, err)
	}
	if st.State != stalled.State || st.State != Progressing {
		t.Errorf("GET while the write of %s is stalled says %s, want %s", stalled.State, st.State, Progressing)
	}
	start = time.Now()
	lresp, err := client.Get(api + "/rollouts")
	if err != nil || lresp.StatusCode != http.StatusOK {
		t.Fatalf("list while the state write is stalled: %v %v", err, lresp)
	}
	lresp.Body.Close()
	if got := r.engine.FindByVersion(ns, svc, "v2"); len(got) != 1 {
		t.Errorf("FindByVersion while the state write is stalled: %v", got)
	}
	if n := m.returned.Load(); n != 0 {
		t.Errorf("%d state writes returned before the test let the stalled one go: the reads above did not answer during the stall", n)
	}
	t.Logf("GET answered in %v, list and FindByVersion in %v, while the state write was stalled", took.Round(time.Microsecond), time.Since(start).Round(time.Microsecond))

	// The write comes back: the engine goes on and applies the routes
	// (up to 600 rounds of at least 50 ms: 30 s for a loaded machine).
	for range 600 {
		select {
		case m.release <- struct{}{}:
		case <-time.After(50 * time.Millisecond):
		}
		if st := r.status("echo"); st.Applied != nil && *st.Applied == st.Weights {
			return
		}
	}
	t.Fatalf("routes not applied after the write came back: %+v", r.status("echo"))
}
