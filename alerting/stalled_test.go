package alerting

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshlens/meshlens/rollout"
)

// stalledStatusOf stalls the rollout engine's status write (the mirror
// into Kubernetes) of one rollout's rollback: an API server that stopped
// answering.
type stalledStatusOf struct {
	name    string
	entered chan rollout.State
	release chan struct{}
}

func (m *stalledStatusOf) SaveRollout(ctx context.Context, st rollout.Status) error {
	if st.Name != m.name || st.State != rollout.RollingBack {
		return nil
	}
	select {
	case m.entered <- st.State:
	default:
	}
	select {
	case <-m.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// request is one API call that must be answered within 10 s.
func (e *env) request(method, path string, body []byte) (int, string) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+operatorToken)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: no answer: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestAnAlertRollbackWhoseStateWriteStallsHoldsUpNothingElse: an alert
// rule rolls rollout a back while a's state write (its Kubernetes status)
// hangs. Meanwhile GET /api/v1/alerts shows the alert firing, a shows
// rolling back with its routes not yet written (state comes first), an
// Alertmanager webhook naming rollout b rolls b back at once, and another
// rule, firing a second later, rolls rollout c back (rules go on being
// evaluated). When the write comes back, a's rollback is written and the
// firing notification says what was done.
func TestAnAlertRollbackWhoseStateWriteStallsHoldsUpNothingElse(t *testing.T) {
	e := newEnv(t, Options{})
	sink := newSink(t, "")
	e.startRollout("a")
	e.apply(`apiVersion: meshlens.io/v1alpha1
kind: Rollout
metadata: {name: b, namespace: default}
spec:
  service: echo
  stable: v1
  candidate: v2
  virtualService: echo-b
  strategy: {canary: {steps: [10, 100], minDuration: 1h}}
  analysis: {interval: 1h} # only the Alertmanager webhook rolls it back
`)
	e.waitRollout("b", rollout.Progressing, 5*time.Second)
	e.apply(`apiVersion: meshlens.io/v1alpha1
kind: Rollout
metadata: {name: c, namespace: default}
spec:
  service: echo
  stable: v1
  candidate: v2
  virtualService: echo-c
  strategy: {canary: {steps: [10, 100], minDuration: 1h}}
  analysis: {interval: 1h} # only the alert rolls it back
`)
	e.waitRollout("c", rollout.Progressing, 5*time.Second)
	m := &stalledStatusOf{name: "a", entered: make(chan rollout.State, 1), release: make(chan struct{})}
	e.engine.SetMirror(m)
	var once sync.Once
	release := func() { once.Do(func() { close(m.release) }) }
	defer release()

	e.apply(`apiVersion: meshlens.io/v1alpha1
kind: AlertRule
metadata: {name: a-errors, namespace: default}
spec:
  condition: {metric: errorRate, service: echo, version: v2, threshold: 0.1, window: 2s, minRequests: 20}
  receivers: [{name: ops, url: ` + sink.srv.URL + `}]
  action: {rollback: {rollout: a}}
---
apiVersion: meshlens.io/v1alpha1
kind: AlertRule
metadata: {name: c-errors, namespace: default}
spec:
  condition: {metric: errorRate, service: echo, version: v2, threshold: 0.1, window: 2s, minRequests: 20}
  for: 1s
  receivers: [{name: ops, url: ` + sink.srv.URL + `}]
  action: {rollback: {rollout: c}}
`)
	stalled := false
	for i := 0; i < 200 && !stalled; i++ {
		e.traffic("v2", 20, 10, time.Millisecond)
		select {
		case <-m.entered:
			stalled = true
		case <-time.After(50 * time.Millisecond):
		}
	}
	if !stalled {
		t.Fatal("the alert never rolled rollout a back")
	}

	code, body := e.request(http.MethodGet, "/api/v1/alerts", nil)
	if code != http.StatusOK || !strings.Contains(body, `"rule":"default/a-errors"`) || !strings.Contains(body, `"state":"firing"`) {
		t.Fatalf("GET /api/v1/alerts while a's rollback is stalled: %d %s", code, body)
	}
	if st, _ := e.engine.Get("default", "a"); st.State != rollout.RollingBack {
		t.Fatalf("rollout a while its rollback is stalled: %s", st.State)
	}
	if vs, _ := e.store.Get("VirtualService", "default", "echo"); !strings.Contains(fmt.Sprint(vs.Spec), `subset:"v2"`) {
		t.Fatalf("a's routes were rolled back before its state was written: %v", vs.Spec)
	}

	code, body = e.request(http.MethodPost, "/api/v1/alerts/alertmanager",
		amBody("firing", map[string]string{"alertname": "BErrors", "rollout": "b"}, time.Now()))
	if code != http.StatusOK || !strings.Contains(body, `"outcome":"rolled back"`) {
		t.Fatalf("Alertmanager webhook for b while a's rollback is stalled: %d %s", code, body)
	}
	if vs, _ := e.store.Get("VirtualService", "default", "echo-b"); strings.Contains(fmt.Sprint(vs.Spec), `subset:"v2"`) {
		t.Fatalf("b's routes after its rollback: %v", vs.Spec)
	}

	// c's rule fires a second after a's, while a's rollback still hangs.
	stop := e.keepTraffic(t, "v2", 20, 10, time.Millisecond)
	st := e.waitRollout("c", rollout.RolledBack, 10*time.Second)
	stop()
	if h := st.History[len(st.History)-3]; h.Source != "alert:c-errors" {
		t.Fatalf("c's rollback not made by its alert rule: %+v", h)
	}
	if st, _ := e.engine.Get("default", "a"); st.State != rollout.RollingBack {
		t.Fatalf("rollout a after c's rollback: %s, want still %s (its write hangs)", st.State, rollout.RollingBack)
	}

	release()
	e.waitRollout("a", rollout.RolledBack, 10*time.Second)
	waitFor(t, 10*time.Second, "the firing notification naming a's rollback", func() bool {
		sink.mu.Lock()
		defer sink.mu.Unlock()
		for _, msg := range sink.msgs {
			if msg.Status == "firing" && strings.Contains(msg.CommonAnnotations["meshlens_action"], "rolled back rollout default/a") {
				return true
			}
		}
		return false
	})
	var rr ReceiveResponse
	_ = json.Unmarshal([]byte(body), &rr)
	t.Logf("while a's rollback was stalled: alerts listed, b rolled back by Alertmanager (%s)", rr.Results[0].Message)
}
