package alerting

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshlens/meshlens/controlplane/config"
	"github.com/meshlens/meshlens/internal/meshtest"
	"github.com/meshlens/meshlens/rollout"
)

// webhookSink is a real HTTP receiver that verifies signatures and keeps
// the messages it accepted.
type webhookSink struct {
	mu       sync.Mutex
	msgs     []Message
	refused  atomic.Int64
	failNext atomic.Int64 // answer 503 this many times first
	attempts atomic.Int64
	srv      *httptest.Server
}

func newSink(t *testing.T, secret string) *webhookSink {
	s := &webhookSink{}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.attempts.Add(1)
		body, _ := io.ReadAll(r.Body)
		if secret != "" {
			if err := Verify([]byte(secret), r.Header, body, time.Now()); err != nil {
				s.refused.Add(1)
				http.Error(w, err.Error(), http.StatusUnauthorized)
				return
			}
		}
		if s.failNext.Add(-1) >= 0 {
			http.Error(w, "try later", http.StatusServiceUnavailable)
			return
		}
		m, err := ParseMessage(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		s.msgs = append(s.msgs, *m)
		s.mu.Unlock()
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *webhookSink) statuses() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, m := range s.msgs {
		out = append(out, m.Status)
	}
	return out
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestErrorRateRuleFiresRollsBackAndResolves(t *testing.T) {
	e := newEnv(t, Options{})
	sink := newSink(t, "s3cret")
	e.startRollout("echo")
	e.apply(`apiVersion: meshlens.io/v1alpha1
kind: AlertRule
metadata: {name: echo-v2-errors, namespace: default}
spec:
  condition: {metric: errorRate, service: echo, version: v2, threshold: 0.1, window: 2s, minRequests: 20}
  for: 300ms
  labels: {severity: page}
  annotations: {summary: echo v2 fails}
  receivers: [{name: ops, url: ` + sink.srv.URL + `, secret: s3cret}]
  action: {rollback: {rollout: echo}}
`)
	// Healthy traffic, then low traffic with errors: neither fires.
	e.traffic("v2", 100, 0, time.Millisecond)
	e.traffic("v2", 5, 5, time.Millisecond)
	time.Sleep(500 * time.Millisecond)
	if got := sink.statuses(); len(got) != 0 {
		t.Fatalf("notifications before the condition held: %v", got)
	}
	stop := e.keepTraffic(t, "v2", 20, 10, time.Millisecond)
	waitFor(t, 10*time.Second, "firing notification", func() bool { return len(sink.statuses()) >= 1 })
	stop()
	st := e.waitRollout("echo", rollout.RolledBack, 5*time.Second)
	if h := st.History[len(st.History)-3]; h.Source != "alert:echo-v2-errors" {
		t.Errorf("rollback not attributed to the rule: %+v", h)
	}
	firing := e.al.Firing()
	if len(firing) != 1 || firing[0].State != "firing" || firing[0].Labels["severity"] != "page" || firing[0].Action == "" {
		t.Fatalf("firing alerts: %+v", firing)
	}
	sink.mu.Lock()
	m := sink.msgs[0]
	sink.mu.Unlock()
	if m.Version != "4" || m.Status != "firing" || m.Alerts[0].Labels["alertname"] != "echo-v2-errors" || m.Alerts[0].Annotations["summary"] != "echo v2 fails" {
		t.Fatalf("notification: %+v", m)
	}
	// Errors stop; once the window holds only healthy traffic the alert resolves.
	waitFor(t, 10*time.Second, "resolved notification", func() bool {
		e.traffic("v2", 30, 0, time.Millisecond)
		got := sink.statuses()
		return len(got) == 2 && got[1] == "resolved"
	})
	if sink.refused.Load() != 0 {
		t.Fatalf("%d notifications failed signature checks", sink.refused.Load())
	}
}

func TestNotifierRetriesWithBackoffAndGivesUpOnClientErrors(t *testing.T) {
	sink := newSink(t, "k")
	n, err := NewNotifier(NotifierOptions{Backoff: 10 * time.Millisecond, Attempts: 4}, meshtest.Logger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	msg := Message{Version: "4", Status: "firing", Alerts: []Alert{{Status: "firing", Labels: map[string]string{"alertname": "x"}}}}

	sink.failNext.Store(2)
	n.Notify(t.Context(), Receiver{Name: "r", URL: sink.srv.URL, Secret: "k"}, msg)
	n.Wait()
	if got := sink.attempts.Load(); got != 3 || len(sink.statuses()) != 1 {
		t.Fatalf("want delivery on the 3rd attempt, got %d attempts, %d delivered", got, len(sink.statuses()))
	}

	// A wrong secret is a 401: not retried.
	sink.attempts.Store(0)
	n.Notify(t.Context(), Receiver{Name: "r", URL: sink.srv.URL, Secret: "wrong"}, msg)
	n.Wait()
	if got := sink.attempts.Load(); got != 1 {
		t.Fatalf("a 401 was retried: %d attempts", got)
	}

	// A receiver that stays down gets every attempt, then is given up.
	sink.attempts.Store(0)
	sink.failNext.Store(100)
	n.Notify(t.Context(), Receiver{Name: "r", URL: sink.srv.URL, Secret: "k"}, msg)
	n.Wait()
	if got := sink.attempts.Load(); got != 4 {
		t.Fatalf("want 4 attempts, got %d", got)
	}
}

func TestAlertRuleValidation(t *testing.T) {
	e := newEnv(t, Options{})
	for _, tc := range []struct {
		name, spec, field string
	}{
		{"unknown metric", `{condition: {metric: cpu, service: echo, threshold: 1}}`, "condition.metric"},
		{"error rate above 1", `{condition: {metric: errorRate, service: echo, threshold: 5}}`, "condition.threshold"},
		{"bad receiver URL", `{condition: {metric: rps, service: echo, threshold: 1}, receivers: [{name: a, url: "ftp://x"}]}`, "receivers[0].url"},
		{"rollback without a rollout", `{condition: {metric: rps, service: echo, threshold: 1}, action: {rollback: {}}}`, "action.rollback.rollout"},
		{"unknown field", `{condition: {metric: rps, service: echo, threshold: 1}, fro: 1s}`, "fro"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := e.kinds.Parse([]byte("apiVersion: meshlens.io/v1alpha1\nkind: AlertRule\nmetadata: {name: r, namespace: default}\nspec: " + tc.spec))
			if err == nil {
				_, _, err = e.store.Apply(t.Context(), objs)
			}
			b, _ := json.Marshal(err)
			if err == nil || !json.Valid(b) || !containsField(err, tc.field) {
				t.Fatalf("want an error on field %s, got %v", tc.field, err)
			}
		})
	}
}

// A rule whose rollback names a Rollout that does not exist (yet) is
// accepted with an IST0101 warning, as Istio treats references, and
// starts working once the Rollout is applied.
func TestAlertRuleForMissingRolloutWarns(t *testing.T) {
	e := newEnv(t, Options{})
	objs, err := e.kinds.Parse([]byte("apiVersion: meshlens.io/v1alpha1\nkind: AlertRule\nmetadata: {name: r, namespace: default}\nspec: {condition: {metric: rps, service: echo, threshold: 1}, action: {rollback: {rollout: ghost}}}"))
	if err != nil {
		t.Fatal(err)
	}
	_, ws, err := e.store.Apply(t.Context(), objs)
	if err != nil {
		t.Fatalf("refused: %v", err)
	}
	if len(ws) != 1 || ws[0].Code != config.CodeReferencedResourceNotFound || ws[0].Field != "action.rollback.rollout" || !strings.Contains(ws[0].Message, "default/ghost") {
		t.Fatalf("warnings %v, want IST0101 on action.rollback.rollout", ws)
	}
}
