package alerting

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/meshlens/meshlens/rollout"
)

func amBody(status string, labels map[string]string, startsAt time.Time) []byte {
	m := Message{Version: "4", Status: status, Receiver: "meshlens", GroupKey: "{}:{}",
		Alerts: []Alert{{Status: status, Labels: labels, StartsAt: startsAt, Fingerprint: fingerprint(labels)}}}
	b, _ := json.Marshal(m)
	return b
}

type post struct {
	token   string
	body    []byte
	headers map[string]string
}

func (e *env) post(p post) (int, string) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/api/v1/alerts/alertmanager", bytes.NewReader(p.body))
	req.Header.Set("Content-Type", "application/json")
	if p.token != "" {
		req.Header.Set("Authorization", "Bearer "+p.token)
	}
	for k, v := range p.headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAlertmanagerWebhookAuthAndSignature(t *testing.T) {
	secret := []byte("webhook-secret")
	e := newEnv(t, Options{ReceiverSecret: string(secret)})
	e.startRollout("echo")
	body := amBody("firing", map[string]string{"alertname": "X", "rollout": "nope"}, time.Now())
	sign := func(b []byte, at time.Time) map[string]string {
		sig, ts := Sign(secret, b, at)
		return map[string]string{SignatureHeader: sig, TimestampHeader: ts}
	}
	other, _ := Sign([]byte("other-secret"), body, time.Now())
	for _, tc := range []struct {
		name string
		p    post
		want int
	}{
		{"no token is refused", post{body: body, headers: sign(body, time.Now())}, http.StatusUnauthorized},
		{"viewer token is refused", post{token: viewerToken, body: body, headers: sign(body, time.Now())}, http.StatusForbidden},
		{"unsigned webhook is refused", post{token: operatorToken, body: body}, http.StatusUnauthorized},
		{"webhook signed with another secret is refused", post{token: operatorToken, body: body,
			headers: map[string]string{SignatureHeader: other, TimestampHeader: fmt.Sprint(time.Now().Unix())}}, http.StatusUnauthorized},
		{"signature of another body is refused", post{token: operatorToken, body: body, headers: sign([]byte(`{}`), time.Now())}, http.StatusUnauthorized},
		{"stale signature is refused", post{token: operatorToken, body: body, headers: sign(body, time.Now().Add(-time.Hour))}, http.StatusUnauthorized},
		{"signed webhook naming an unknown rollout is answered 404", post{token: operatorToken, body: body, headers: sign(body, time.Now())}, http.StatusNotFound},
		{"signed garbage is a 400", post{token: operatorToken, body: []byte(`{"version":"3"}`), headers: sign([]byte(`{"version":"3"}`), time.Now())}, http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, resp := e.post(tc.p)
			if code != tc.want {
				t.Fatalf("status %d, want %d: %s", code, tc.want, resp)
			}
			if !json.Valid([]byte(resp)) {
				t.Fatalf("answer is not JSON: %s", resp)
			}
		})
	}
	if st, _ := e.engine.Get("default", "echo"); st.State != rollout.Progressing {
		t.Fatalf("refused webhooks changed the rollout: %s", st.State)
	}
}

func TestAlertmanagerWebhookRollsBackByLabels(t *testing.T) {
	start := time.Now().Add(-time.Minute)
	for _, tc := range []struct {
		name    string
		labels  map[string]string
		outcome string
		code    int
		rolled  bool
	}{
		{"rollout and namespace labels", map[string]string{"alertname": "A", "rollout": "echo", "namespace": "default"}, "rolled back", 200, true},
		{"rollout label defaults to namespace default", map[string]string{"alertname": "A", "rollout": "echo"}, "rolled back", 200, true},
		{"service and version under rollout", map[string]string{"alertname": "A", "service": "echo", "version": "v2", "namespace": "default"}, "rolled back", 200, true},
		{"Istio destination labels", map[string]string{"alertname": "A", "destination_service_name": "echo", "destination_version": "v2", "destination_service_namespace": "default"}, "rolled back", 200, true},
		{"stable version is not under rollout", map[string]string{"alertname": "A", "service": "echo", "version": "v1"}, "not a rollout alert", 200, false},
		{"unknown rollout", map[string]string{"alertname": "A", "rollout": "ghost"}, "unknown rollout", 404, false},
		{"no rollout labels", map[string]string{"alertname": "DiskFull"}, "not a rollout alert", 200, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Options{})
			e.startRollout("echo")
			code, resp := e.post(post{token: operatorToken, body: amBody("firing", tc.labels, start)})
			var rr ReceiveResponse
			if err := json.Unmarshal([]byte(resp), &rr); err != nil || len(rr.Results) != 1 {
				t.Fatalf("answer %d %s: %v", code, resp, err)
			}
			if code != tc.code || rr.Results[0].Outcome != tc.outcome {
				t.Fatalf("got %d %q (%s), want %d %q", code, rr.Results[0].Outcome, rr.Results[0].Message, tc.code, tc.outcome)
			}
			st, _ := e.engine.Get("default", "echo")
			if rolled := st.State == rollout.RolledBack; rolled != tc.rolled {
				t.Fatalf("rollout is %s; rolled back: %v, want %v", st.State, rolled, tc.rolled)
			}
			if tc.rolled {
				vs, _ := e.store.Get("VirtualService", "default", "echo")
				if got := fmt.Sprint(vs.Spec); !strings.Contains(got, `subset:"v1"`) || strings.Contains(got, `subset:"v2"`) {
					t.Fatalf("routes after rollback are not stable-only: %s", got)
				}
			}
		})
	}
}

func TestAlertmanagerDuplicateAndResolvedAlerts(t *testing.T) {
	e := newEnv(t, Options{})
	e.startRollout("echo")
	labels := map[string]string{"alertname": "A", "rollout": "echo"}
	start := time.Now()
	outcome := func(body []byte) string {
		code, resp := e.post(post{token: operatorToken, body: body})
		var rr ReceiveResponse
		if err := json.Unmarshal([]byte(resp), &rr); err != nil || len(rr.Results) != 1 || code != 200 {
			t.Fatalf("answer %d %s", code, resp)
		}
		return rr.Results[0].Outcome
	}
	if got := outcome(amBody("firing", labels, start)); got != "rolled back" {
		t.Fatalf("first alert: %q", got)
	}
	if n := len(e.al.Firing()); n != 1 {
		t.Fatalf("want the received alert listed as firing, got %d", n)
	}
	if got := outcome(amBody("firing", labels, start)); got != "duplicate" {
		t.Fatalf("repeated alert: %q", got)
	}
	if got := outcome(amBody("firing", labels, start.Add(time.Second))); got != "already rolled back" {
		t.Fatalf("a new firing of the same alert: %q", got)
	}
	if got := outcome(amBody("resolved", labels, start)); got != "resolved" {
		t.Fatalf("resolved alert: %q", got)
	}
	if n := len(e.al.Firing()); n != 0 {
		t.Fatalf("resolved alert still listed: %+v", e.al.Firing())
	}
	st, _ := e.engine.Get("default", "echo")
	rollbacks := 0
	for _, h := range st.History {
		if h.Type == "transition" && h.To == rollout.RollingBack {
			rollbacks++
		}
	}
	if st.State != rollout.RolledBack || rollbacks != 1 {
		t.Fatalf("want exactly one rollback, got state %s and %d", st.State, rollbacks)
	}
}
