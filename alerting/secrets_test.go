package alerting

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/meshlens/meshlens/auth"
	"github.com/meshlens/meshlens/controlplane/config"
	"github.com/meshlens/meshlens/internal/meshtest"
)

// configAPI serves the env's store through the config routes behind the
// real bearer-token middleware, reads requiring a token.
func (e *env) configAPI() string {
	e.t.Helper()
	az := auth.New([]auth.Token{{Value: operatorToken, Role: auth.Operator}, {Value: viewerToken, Role: auth.Viewer}})
	ec := echo.New()
	config.RegisterRoutes(ec.Group("/api/v1", az.Viewer(true)), e.store, az.Operator())
	srv := httptest.NewServer(ec)
	e.t.Cleanup(srv.Close)
	return srv.URL + "/api/v1"
}

// receiversIn finds the AlertRule's receivers in a GET answer, one object
// or a list.
func receiversIn(t *testing.T, body string) []Receiver {
	t.Helper()
	type obj struct {
		Kind string   `json:"kind"`
		Spec RuleSpec `json:"spec"`
	}
	var one obj
	var list struct {
		Items []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		t.Fatal(err)
	}
	for _, it := range list.Items {
		var o obj
		if json.Unmarshal(it, &o) == nil && o.Kind == Kind {
			return o.Spec.Receivers
		}
	}
	if err := json.Unmarshal([]byte(body), &one); err != nil {
		t.Fatal(err)
	}
	return one.Spec.Receivers
}

func (e *env) storedReceivers(name string) []Receiver {
	e.t.Helper()
	o := e.store.Snapshot().Get(Kind, "default", name)
	if o == nil {
		e.t.Fatalf("AlertRule default/%s is not stored", name)
	}
	return o.Spec.(*RuleSpec).Receivers
}

// A viewer reads an AlertRule without its webhook secret; the stored
// secret is untouched, applying the redacted object back (as is, changed,
// or as a dry run) keeps it, and notifications are still signed with it.
func TestViewerSeesRedactedSecretAndRedactedApplyKeepsIt(t *testing.T) {
	const secret = "real-hmac-secret-4f1c"
	e := newEnv(t, Options{})
	api := e.configAPI()
	sink := newSink(t, secret)
	unsigned := newSink(t, "")
	rule := `apiVersion: meshlens.io/v1alpha1
kind: AlertRule
metadata: {name: echo-errors, namespace: default}
spec:
  condition: {metric: errorRate, service: echo, version: v2, threshold: 0.1, window: 2s, minRequests: 20}
  for: 200ms
  receivers:
  - {name: ops, url: ` + sink.srv.URL + `, secret: ` + secret + `}
  - {name: chat, url: ` + unsigned.srv.URL + `}
`
	if code, body := meshtest.HTTP(t, "POST", api+"/config", operatorToken, rule); code != 200 {
		t.Fatalf("apply: %d %s", code, body)
	}
	version := e.store.Snapshot().Version

	var redacted string
	for _, path := range []string{"/config/alertrule/default/echo-errors", "/config?kind=ar", "/config"} {
		for _, token := range []string{viewerToken, operatorToken} {
			code, body := meshtest.HTTP(t, "GET", api+path, token, "")
			if code != 200 {
				t.Fatalf("GET %s: %d %s", path, code, body)
			}
			if strings.Contains(body, secret) {
				t.Fatalf("GET %s shows the secret: %s", path, body)
			}
			if got := receiversIn(t, body); len(got) != 2 || got[0].Secret != config.Redacted || got[1].Secret != "" {
				t.Fatalf("GET %s: want the secret shown as %s and the unsigned receiver without one: %+v", path, config.Redacted, got)
			}
			if path == "/config/alertrule/default/echo-errors" {
				redacted = body
			}
		}
	}
	if got := e.storedReceivers("echo-errors"); got[0].Secret != secret || got[1].Secret != "" {
		t.Fatalf("reading changed the stored receivers: %+v", got)
	}

	// Applied back exactly as read: nothing changes.
	if code, body := meshtest.HTTP(t, "POST", api+"/config", operatorToken, redacted); code != 200 {
		t.Fatalf("apply of GET output: %d %s", code, body)
	}
	if v := e.store.Snapshot().Version; v != version {
		t.Fatalf("applying the GET output unchanged moved the version %d -> %d", version, v)
	}
	// Read, edited elsewhere, applied back: the edit lands, the secret stays.
	edited := strings.Replace(redacted, `"threshold":0.1`, `"threshold":0.2`, 1)
	if edited == redacted {
		t.Fatalf("test edit did not apply to %s", redacted)
	}
	for _, q := range []string{"?dryRun=true", ""} {
		if code, body := meshtest.HTTP(t, "POST", api+"/config"+q, operatorToken, edited); code != 200 {
			t.Fatalf("apply%s of edited GET output: %d %s", q, code, body)
		}
	}
	o := e.store.Snapshot().Get(Kind, "default", "echo-errors")
	if s := o.Spec.(*RuleSpec); s.Condition.Threshold != 0.2 || s.Receivers[0].Secret != secret {
		t.Fatalf("after applying the redacted rule: threshold %v, secret %q", s.Condition.Threshold, s.Receivers[0].Secret)
	}

	// The state file, not the API, is where the real secret lives.
	data, err := os.ReadFile(filepath.Join(e.dir, config.StateFile))
	if err != nil || !strings.Contains(string(data), secret) || strings.Contains(string(data), config.Redacted) {
		t.Fatalf("the state file does not hold the real secret (%v): %s", err, data)
	}

	// Notifications are signed with the real secret: the sink refuses others.
	e.keepTraffic(t, "v2", 20, 10, time.Millisecond)
	waitFor(t, 10*time.Second, "signed firing notification", func() bool { return len(sink.statuses()) >= 1 && len(unsigned.statuses()) >= 1 })
	if n := sink.refused.Load(); n != 0 {
		t.Fatalf("%d notifications were not signed with the real secret", n)
	}
}

// A redacted secret is restored only from the stored receiver with the same
// name and URL; anywhere else it is refused, naming the field, and the
// literal placeholder is never stored.
func TestRedactedSecretWithoutAStoredOneIsRefused(t *testing.T) {
	const secret = "real-hmac-secret-77aa"
	e := newEnv(t, Options{})
	api := e.configAPI()
	ruleOf := func(name, recv, url, secret string) string {
		return fmt.Sprintf(`{"apiVersion":"meshlens.io/v1alpha1","kind":"AlertRule","metadata":{"name":%q,"namespace":"default"},
"spec":{"condition":{"metric":"rps","service":"echo","threshold":1},"receivers":[{"name":%q,"url":%q,"secret":%q}]}}`, name, recv, url, secret)
	}
	if code, body := meshtest.HTTP(t, "POST", api+"/config", operatorToken, ruleOf("r", "ops", "http://127.0.0.1:1/hook", secret)); code != 200 {
		t.Fatalf("apply: %d %s", code, body)
	}
	for _, tc := range []struct{ name, body string }{
		{"new object", ruleOf("other", "ops", "http://127.0.0.1:1/hook", config.Redacted)},
		{"receiver renamed", ruleOf("r", "pager", "http://127.0.0.1:1/hook", config.Redacted)},
		{"receiver URL changed", ruleOf("r", "ops", "http://127.0.0.1:2/elsewhere", config.Redacted)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, q := range []string{"", "?dryRun=true"} {
				code, body := meshtest.HTTP(t, "POST", api+"/config"+q, operatorToken, tc.body)
				var er config.ErrorsResponse
				if code != 400 || json.Unmarshal([]byte(body), &er) != nil || len(er.Errors) != 1 {
					t.Fatalf("apply%s: %d %s", q, code, body)
				}
				if e := er.Errors[0]; e.Field != "receivers[0].secret" || !strings.Contains(e.Message, "give the secret again") {
					t.Fatalf("apply%s: error %+v", q, e)
				}
			}
			if got := e.storedReceivers("r"); got[0].Secret != secret || got[0].Name != "ops" {
				t.Fatalf("refused apply changed the stored receiver: %+v", got)
			}
		})
	}
	// Offline validation (meshlens validate) has nothing to restore from.
	objs, err := e.kinds.Parse([]byte(ruleOf("r", "ops", "http://127.0.0.1:1/hook", config.Redacted)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.kinds.Validate(nil, objs); !containsField(err, "receivers[0].secret") {
		t.Fatalf("offline validation of a redacted secret: %v", err)
	}
}

func TestReceiverSecretFileValidation(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(good, []byte("from-a-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(empty, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, Options{})
	for _, tc := range []struct {
		name, receiver string
		field          string // "" for valid
	}{
		{"secretFile alone is valid", `secretFile: ` + good, ""},
		{"secret alone is valid", `secret: inline`, ""},
		{"neither (unsigned) is valid", ``, ""},
		{"both are refused", `secret: inline, secretFile: ` + good, "receivers[0].secretFile"},
		{"missing file is refused", `secretFile: ` + filepath.Join(dir, "missing"), "receivers[0].secretFile"},
		{"directory is refused", `secretFile: ` + dir, "receivers[0].secretFile"},
		{"empty file is refused", `secretFile: ` + empty, "receivers[0].secretFile"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rcv := "{name: ops, url: 'http://127.0.0.1:1/hook'"
			if tc.receiver != "" {
				rcv += ", " + tc.receiver
			}
			objs, err := e.kinds.Parse([]byte(`apiVersion: meshlens.io/v1alpha1
kind: AlertRule
metadata: {name: r, namespace: default}
spec:
  condition: {metric: rps, service: echo, threshold: 1}
  receivers: [` + rcv + `}]
`))
			if err != nil {
				t.Fatal(err)
			}
			_, err = e.store.Check(objs)
			if tc.field == "" && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if tc.field != "" && !containsField(err, tc.field) {
				t.Fatalf("want an error on %s, got %v", tc.field, err)
			}
		})
	}
}

// secretFile is read when a notification is sent: a rotated file signs the
// next notification with the new secret, and an unreadable one sends
// nothing (never unsigned) and counts a failure.
func TestSecretFileIsReadAtSendTime(t *testing.T) {
	sink := newSink(t, "new-secret")
	file := filepath.Join(t.TempDir(), "secret")
	n, err := NewNotifier(NotifierOptions{Attempts: 1}, meshtest.Logger(t), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	r := Receiver{Name: "ops", URL: sink.srv.URL, SecretFile: file}
	msg := Message{Version: "4", Status: "firing", Receiver: "ops", Alerts: []Alert{{Status: "firing", Labels: map[string]string{"alertname": "x"}}}}
	for _, tc := range []struct {
		name     string
		contents string // "" removes the file
		accepted int
		refused  int64
		attempts int64
		failed   float64
	}{
		{"old secret is refused by the receiver", "old-secret\n", 0, 1, 1, 1},
		{"rotated secret is accepted", "new-secret\n", 1, 1, 2, 1},
		{"unreadable file sends nothing", "", 1, 1, 2, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.contents == "" {
				if err := os.Remove(file); err != nil {
					t.Fatal(err)
				}
			} else if err := os.WriteFile(file, []byte(tc.contents), 0o600); err != nil {
				t.Fatal(err)
			}
			n.Notify(context.Background(), r, msg)
			n.Wait()
			if got := len(sink.statuses()); got != tc.accepted {
				t.Errorf("accepted %d notifications, want %d", got, tc.accepted)
			}
			if got := sink.refused.Load(); got != tc.refused {
				t.Errorf("receiver refused %d, want %d", got, tc.refused)
			}
			if got := sink.attempts.Load(); got != tc.attempts {
				t.Errorf("receiver saw %d requests, want %d", got, tc.attempts)
			}
			var m dto.Metric
			if err := n.sent.WithLabelValues("ops", "failed").Write(&m); err != nil {
				t.Fatal(err)
			}
			if got := m.GetCounter().GetValue(); got != tc.failed {
				t.Errorf("failed notifications %v, want %v", got, tc.failed)
			}
		})
	}
}

// Each redacted receiver gets back its own stored secret, wherever it moved
// in the list; when the name and URL do not say which, it is refused.
func TestUnredactMatchesReceiversByNameAndURL(t *testing.T) {
	rcv := func(name, url, secret string) Receiver { return Receiver{Name: name, URL: url, Secret: secret} }
	const a, b, red = "http://a/hook", "http://b/hook", config.Redacted
	for _, tc := range []struct {
		name            string
		stored, applied []Receiver
		want            []string // secrets after unredact; nil when refused
	}{
		{"reordered receivers keep their own secrets",
			[]Receiver{rcv("x", a, "SX"), rcv("y", b, "SY")}, []Receiver{rcv("y", b, red), rcv("x", a, red)}, []string{"SY", "SX"}},
		{"a new receiver before them does not shift secrets",
			[]Receiver{rcv("x", a, "SX")}, []Receiver{rcv("n", b, "new"), rcv("x", a, red)}, []string{"new", "SX"}},
		{"twins at the same index keep theirs",
			[]Receiver{rcv("x", a, "S1"), rcv("x", a, "S2")}, []Receiver{rcv("x", a, red), rcv("x", a, red)}, []string{"S1", "S2"}},
		{"twins with different secrets moved are ambiguous",
			[]Receiver{rcv("x", a, "S1"), rcv("x", a, "S2")}, []Receiver{rcv("n", b, "new"), rcv("x", a, red), rcv("x", a, red)}, nil},
		{"an unsigned stored receiver has nothing to keep",
			[]Receiver{rcv("x", a, "")}, []Receiver{rcv("x", a, red)}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, errs := unredactRule(&RuleSpec{Receivers: tc.applied}, &RuleSpec{Receivers: tc.stored})
			if tc.want == nil {
				if len(errs) == 0 {
					t.Fatalf("accepted: %+v", got.(*RuleSpec).Receivers)
				}
				return
			}
			if len(errs) > 0 {
				t.Fatalf("refused: %v", errs)
			}
			var secrets []string
			for _, r := range got.(*RuleSpec).Receivers {
				secrets = append(secrets, r.Secret)
			}
			if !slices.Equal(secrets, tc.want) {
				t.Fatalf("secrets %q, want %q", secrets, tc.want)
			}
		})
	}
}
