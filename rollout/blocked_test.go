package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshlens/meshlens/internal/meshtest"
)

// heldTraffic is a traffic provider (as the Kubernetes ones are) whose
// writes of one rollout's routes hang until the test lets them go: an API
// server that stopped answering for that object. It keeps the routes it
// was given, and checks every write against the engine's state file: the
// weights pushed must already be persisted there.
type heldTraffic struct {
	t        testing.TB
	stateDir string

	mu      sync.Mutex
	hold    map[string]chan struct{} // rollout name -> closed to let its writes go
	entered chan string              // names of rollouts whose write hangs now
	routes  map[string]Weights
	writing map[string]int // writes under way, by rollout
}

func newHeldTraffic(t testing.TB, stateDir string) *heldTraffic {
	return &heldTraffic{t: t, stateDir: stateDir, hold: map[string]chan struct{}{}, entered: make(chan string, 16),
		routes: map[string]Weights{}, writing: map[string]int{}}
}

// holdWrites makes the writes of rollout name hang until the returned
// function is called.
func (h *heldTraffic) holdWrites(name string) (let func()) {
	ch := make(chan struct{})
	h.mu.Lock()
	h.hold[name] = ch
	h.mu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { close(ch) }) }
}

func (h *heldTraffic) Apply(ctx context.Context, t Target, _ *Weights, w Weights) (Written, error) {
	if err := h.persisted(t.Name, w); err != nil {
		h.t.Errorf("write of %s's routes %+v before its state says so: %v", t.Name, w, err)
	}
	h.mu.Lock()
	ch := h.hold[t.Name]
	h.writing[t.Name]++
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		h.writing[t.Name]--
		h.mu.Unlock()
	}()
	if ch != nil {
		h.entered <- t.Name
		select {
		case <-ch:
		case <-ctx.Done():
			return Written{}, fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	changed := h.routes[t.Name] != w
	h.routes[t.Name] = w
	return Written{Changed: changed, Revision: "1"}, nil
}

func (h *heldTraffic) Check(context.Context, Target, Weights) error          { return nil }
func (h *heldTraffic) Release(context.Context, Target, *Weights, bool) error { return nil }

// persisted checks the engine's state file holds weights w for rollout name.
func (h *heldTraffic) persisted(name string, w Weights) error {
	b, err := os.ReadFile(filepath.Join(h.stateDir, StateFile))
	if err != nil {
		return err
	}
	var p persisted
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	for _, st := range p.Rollouts {
		if st.Name == name {
			if st.Weights != w {
				return fmt.Errorf("the state file says %+v (%s)", st.Weights, st.State)
			}
			return nil
		}
	}
	return errors.New("the state file does not name it")
}

func (h *heldTraffic) routesOf(name string) (Weights, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.routes[name], h.writing[name]
}

// call is one bounded API call: it fails the test if no answer comes in 10 s.
func call(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+opToken)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: no answer: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

const heldRolloutYAML = `apiVersion: meshlens.io/v1alpha1
kind: Rollout
metadata: {name: %s, namespace: default}
spec:
  service: echo
  stable: stable
  candidate: canary
  trafficProvider: istio
  virtualService: %s
  strategy: {canary: {steps: [10, 50, 100], minDuration: 1h}}
`

// TestARolloutWhoseRouteWriteHangsHoldsUpNoOtherRollout hangs the route
// write of rollout a (its provider's API server stopped answering): while
// it hangs, the API shows a's new state, rollout b starts and gets its
// routes, an operator pauses and aborts b over HTTP and b's rollback is
// written, and alerting's Rollback of b answers; an action on a itself
// waits for a's write (two steps of one rollout never interleave). Every
// write found its weights in the state file first. Once a's write comes
// back, a's routes are applied.
func TestARolloutWhoseRouteWriteHangsHoldsUpNoOtherRollout(t *testing.T) {
	r := newRig(t)
	held := newHeldTraffic(t, r.dir)
	r.traffic = map[string]Traffic{ProviderIstio: held}
	r.startEngine()
	api := r.serveAPI()
	let := held.holdWrites("a")
	defer let()

	r.apply(fmt.Sprintf(heldRolloutYAML, "a", "a"))
	select {
	case <-held.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("rollout a never wrote its routes")
	}

	code, body := call(t, http.MethodGet, api+"/rollouts/default/a", "")
	var st Status
	if err := json.Unmarshal([]byte(body), &st); code != http.StatusOK || err != nil || st.State != Progressing || st.Applied != nil {
		t.Fatalf("GET rollout a while its write hangs: %d %s", code, body)
	}
	if code, body := call(t, http.MethodGet, api+"/rollouts", ""); code != http.StatusOK || !strings.Contains(body, `"name":"a"`) {
		t.Fatalf("list while a's write hangs: %d %s", code, body)
	}

	r.apply(fmt.Sprintf(heldRolloutYAML, "b", "b"))
	meshtest.Eventually(t, 10*time.Second, "rollout b's routes are written while a's write hangs", func() error {
		if w, _ := held.routesOf("b"); w != (Weights{Stable: 90, Candidate: 10}) {
			return fmt.Errorf("b's routes hold %+v", w)
		}
		return nil
	})
	if code, body := call(t, http.MethodPost, api+"/rollouts/default/b/pause", ""); code != http.StatusOK || !strings.Contains(body, `"to":"`+string(Paused)+`"`) {
		t.Fatalf("pause b while a's write hangs: %d %s", code, body)
	}
	if code, body := call(t, http.MethodPost, api+"/rollouts/default/b/abort", ""); code != http.StatusOK || !strings.Contains(body, `"to":"`+string(RolledBack)+`"`) {
		t.Fatalf("abort b while a's write hangs: %d %s", code, body)
	}
	if w, _ := held.routesOf("b"); w != (Weights{Stable: 100}) {
		t.Fatalf("b's routes after its abort: %+v, want all on stable", w)
	}
	if res, err := r.engine.Rollback(context.Background(), ns, "b", "alert:test", "test"); err != nil || res.Changed || res.To != RolledBack {
		t.Fatalf("alerting's rollback of b while a's write hangs: %+v %v", res, err)
	}

	// a's own next step waits for its write under way.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	_, err := r.engine.Do(ctx, ns, "a", EvPause, "operator", "hold")
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("pause of a while a's write hangs: %v, want it to wait for that write", err)
	}
	if _, writing := held.routesOf("a"); writing != 1 {
		t.Fatalf("a's writes under way: %d, want the one hanging", writing)
	}

	let()
	meshtest.Eventually(t, 10*time.Second, "a's routes are applied once its write comes back", func() error {
		if st := r.status("a"); st.Applied == nil || *st.Applied != st.Weights {
			return fmt.Errorf("a: %s applied %+v weights %+v", st.State, st.Applied, st.Weights)
		}
		return nil
	})
	if w, _ := held.routesOf("a"); w != (Weights{Stable: 90, Candidate: 10}) {
		t.Fatalf("a's routes: %+v", w)
	}
}

// TestAStalledStateWriteOfOneRolloutHoldsUpNoOtherRollout stalls the
// status write (the mirror into Kubernetes) of rollout a as it starts: a
// shows Progressing and writes no routes until its state is written, while
// rollout b starts, gets its routes and is aborted over HTTP.
func TestAStalledStateWriteOfOneRolloutHoldsUpNoOtherRollout(t *testing.T) {
	r := newRig(t)
	held := newHeldTraffic(t, r.dir)
	r.traffic = map[string]Traffic{ProviderIstio: held}
	m := &stalledMirror{name: "a", entered: make(chan Status, 1), release: make(chan struct{})}
	r.startEngine()
	r.engine.SetMirror(m)
	api := r.serveAPI()
	var once sync.Once
	release := func() { once.Do(func() { close(m.release) }) }
	defer release()

	r.apply(fmt.Sprintf(heldRolloutYAML, "a", "a"))
	select {
	case <-m.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("rollout a's state was never written")
	}
	r.apply(fmt.Sprintf(heldRolloutYAML, "b", "b"))
	meshtest.Eventually(t, 10*time.Second, "rollout b's routes are written while a's state write is stalled", func() error {
		if w, _ := held.routesOf("b"); w != (Weights{Stable: 90, Candidate: 10}) {
			return fmt.Errorf("b's routes hold %+v", w)
		}
		return nil
	})
	if code, body := call(t, http.MethodPost, api+"/rollouts/default/b/abort", ""); code != http.StatusOK || !strings.Contains(body, `"to":"`+string(RolledBack)+`"`) {
		t.Fatalf("abort b while a's state write is stalled: %d %s", code, body)
	}
	if st := r.status("a"); st.State != Progressing || st.Applied != nil {
		t.Fatalf("a while its state write is stalled: %s applied %+v, want Progressing with no routes written", st.State, st.Applied)
	}
	if w, _ := held.routesOf("a"); w != (Weights{}) {
		t.Fatalf("a's routes were written before its state: %+v", w)
	}
	release()
	meshtest.Eventually(t, 10*time.Second, "a's routes are applied once its state is written", func() error {
		if w, _ := held.routesOf("a"); w != (Weights{Stable: 90, Candidate: 10}) {
			return fmt.Errorf("a's routes hold %+v", w)
		}
		return nil
	})
}
