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
	start := time.Now()
	client := &http.Client{Timeout: 5 * time.Second}
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
	if took > time.Second {
		t.Errorf("GET took %v while the state write was stalled", took)
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
	if d := time.Since(start); d > time.Second {
		t.Errorf("list and FindByVersion took %v while the state write was stalled", d)
	}
	t.Logf("GET answered in %v, list and FindByVersion in %v, while the state write was stalled", took.Round(time.Microsecond), time.Since(start).Round(time.Microsecond))

	// The write comes back: the engine goes on and applies the routes.
	for range 100 {
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
