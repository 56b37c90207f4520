package alerting

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/meshlens/meshlens/auth"
	"github.com/meshlens/meshlens/controlplane/config"
	"github.com/meshlens/meshlens/rollout"
)

var seedMessages = []string{
	`{"version":"4","status":"firing","receiver":"meshlens","groupKey":"{}:{alertname=\"A\"}","alerts":[{"status":"firing","labels":{"alertname":"A","rollout":"echo","namespace":"default"},"startsAt":"2026-01-01T00:00:00Z","fingerprint":"abc"}]}`,
	`{"version":"4","status":"resolved","alerts":[{"status":"resolved","labels":{"service":"echo","version":"v2"},"startsAt":"2026-01-01T00:00:00Z","endsAt":"2026-01-01T00:05:00Z"}]}`,
	`{"version":"4","alerts":[{"status":"firing","labels":{"destination_service_name":"echo","destination_version":"v2"}}]}`,
	`{"version":"4","alerts":[{"status":"pending"}]}`,
	`{"version":"3"}`,
	`{"version":"4","alerts":[{"status":"firing","startsAt":"not a time"}]}`,
	`[]`, `null`, ``, `{"version":"4","alerts":null}`,
}

// FuzzReceiver posts arbitrary bodies, signed or not, to the real receiver
// route: it never panics, answers JSON with a known status, and acts only
// on well-formed, correctly signed webhooks.
func FuzzReceiver(f *testing.F) {
	for _, s := range seedMessages {
		f.Add([]byte(s), true)
		f.Add([]byte(s), false)
	}
	secret := []byte("fuzz-secret")
	e := newEnv(f, Options{ReceiverSecret: string(secret)})
	e.startRollout("echo")
	az := auth.New([]auth.Token{{Value: operatorToken, Role: auth.Operator}})
	ec := echo.New()
	e.al.RegisterRoutes(ec.Group("/api/v1"), az.Operator())
	f.Fuzz(func(t *testing.T, body []byte, signed bool) {
		req := httptest.NewRequest(http.MethodPost, "/api/v1/alerts/alertmanager", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+operatorToken)
		if signed {
			sig, ts := Sign(secret, body, time.Now())
			req.Header.Set(SignatureHeader, sig)
			req.Header.Set(TimestampHeader, ts)
		}
		rec := httptest.NewRecorder()
		ec.ServeHTTP(rec, req)
		if !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("answer is not JSON: %q", rec.Body.String())
		}
		switch {
		case !signed && rec.Code != http.StatusUnauthorized:
			t.Fatalf("unsigned webhook answered %d", rec.Code)
		case signed && rec.Code != 200 && rec.Code != 400 && rec.Code != 404:
			t.Fatalf("signed webhook answered %d: %s", rec.Code, rec.Body)
		}
		if _, err := ParseMessage(body); err != nil && rec.Code != http.StatusBadRequest && signed {
			t.Fatalf("malformed webhook accepted with %d", rec.Code)
		}
	})
}

// FuzzVerify: only the exact signature of the exact body and timestamp
// verifies; nothing panics.
func FuzzVerify(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	good, ts := Sign([]byte("k"), []byte("body"), now)
	f.Add([]byte("body"), good, ts)
	f.Add([]byte("body"), "sha256=00", ts)
	f.Add([]byte(""), "", "")
	f.Add([]byte("x"), "sha1=abc", "-1")
	f.Add([]byte("body"), good, ts+"0")
	f.Fuzz(func(t *testing.T, body []byte, sig, ts string) {
		h := http.Header{}
		h.Set(SignatureHeader, sig)
		h.Set(TimestampHeader, ts)
		err := Verify([]byte("k"), h, body, now)
		if err != nil {
			return
		}
		sec, perr := strconv.ParseInt(h.Get(TimestampHeader), 10, 64)
		if perr != nil {
			t.Fatalf("verified with a bad timestamp %q", ts)
		}
		want2 := "sha256=" + macHex([]byte("k"), h.Get(TimestampHeader), body)
		if !strings.EqualFold(h.Get(SignatureHeader), want2) { // hex is case-insensitive
			t.Fatalf("verified a signature that is not the body's: %q", sig)
		}
		if d := now.Unix() - sec; d > int64(MaxSkew.Seconds()) || -d > int64(MaxSkew.Seconds()) {
			t.Fatalf("verified a stale timestamp %d", sec)
		}
	})
}

func macHex(secret []byte, ts string, body []byte) string {
	const hexdigits = "0123456789abcdef"
	m := mac(secret, ts, body)
	out := make([]byte, 0, 2*len(m))
	for _, b := range m {
		out = append(out, hexdigits[b>>4], hexdigits[b&15])
	}
	return string(out)
}

// FuzzSenderMessage: whatever labels and annotations a rule carries, the
// notification the sender encodes and signs verifies and parses back to
// the same alert, and any change to the body breaks the signature.
func FuzzSenderMessage(f *testing.F) {
	f.Add("alertname", "echo-errors", "summary", "5% errors", "secret", byte(0))
	f.Add("", "", "", "", "", byte(7))
	f.Add("rollout", "ünïcødé\x00", "a\"b", "\\n", "k", byte(255))
	now := time.Unix(1_800_000_000, 0)
	f.Fuzz(func(t *testing.T, lk, lv, ak, av, secret string, flip byte) {
		for _, s := range []string{lk, lv, ak, av} {
			if !utf8.ValidString(s) {
				return // labels are UTF-8 (Prometheus); JSON would replace the bytes
			}
		}
		msg := Message{Version: "4", Status: "firing", Receiver: "r", GroupLabels: map[string]string{"alertname": lv},
			CommonLabels: map[string]string{lk: lv}, CommonAnnotations: map[string]string{ak: av},
			Alerts: []Alert{{Status: "firing", Labels: map[string]string{lk: lv}, Annotations: map[string]string{ak: av}, StartsAt: now.UTC()}}}
		body, err := json.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		sig, ts := Sign([]byte(secret), body, now)
		h := http.Header{}
		h.Set(SignatureHeader, sig)
		h.Set(TimestampHeader, ts)
		if err := Verify([]byte(secret), h, body, now); err != nil {
			t.Fatalf("own signature does not verify: %v", err)
		}
		got, err := ParseMessage(body)
		if err != nil {
			t.Fatalf("own message does not parse: %v", err)
		}
		if got.Alerts[0].Labels[lk] != msg.Alerts[0].Labels[lk] || got.Alerts[0].Annotations[ak] != msg.Alerts[0].Annotations[ak] {
			t.Fatalf("round trip changed the alert: %+v", got.Alerts[0])
		}
		tampered := append([]byte(nil), body...)
		tampered[int(flip)%len(tampered)] ^= 0x20
		if err := Verify([]byte(secret), h, tampered, now); err == nil {
			t.Fatalf("tampered body verifies")
		}
	})
}

// FuzzRolloutAndAlertRuleConfig: any document, parsed and validated with
// the Rollout and AlertRule kinds, is accepted or refused with field
// errors, never a panic; accepted specs survive the store's JSON round trip.
func FuzzRolloutAndAlertRuleConfig(f *testing.F) {
	for _, name := range []string{"rollout-canary.yaml", "rollout-bluegreen.yaml", "rollout-ab.yaml", "alertrule-error-rate.yaml", "alertrule-latency-qps.yaml"} {
		b, err := os.ReadFile(filepath.Join("../examples", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("apiVersion: meshlens.io/v1alpha1\nkind: Rollout\nmetadata: {name: x}\nspec: {strategy: {canary: {steps: [100, 5]}, ab: {}}}"))
	f.Add([]byte("apiVersion: meshlens.io/v1alpha1\nkind: AlertRule\nmetadata: {name: x}\nspec: {condition: {metric: rps, window: -1s}, for: 1e99}"))
	kinds, err := config.NewKinds(append(config.IstioKinds(config.IstioOptions{}), rollout.KindSpec(""), KindSpec())...)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		objs, err := kinds.Parse(doc)
		if err != nil {
			return
		}
		_, _ = kinds.Validate(nil, objs)
		for _, o := range objs {
			b, err := json.Marshal(o)
			if err != nil {
				t.Fatalf("%s does not encode: %v", o.Key(), err)
			}
			again, err := kinds.Parse(b)
			if err != nil || len(again) != 1 {
				t.Fatalf("%s does not parse back: %v\n%s", o.Key(), err, b)
			}
		}
	})
}

// Redacting a rule never shows a secret nor changes the stored rule, and
// applying the redacted rule back restores exactly the stored one.
func FuzzRedactRoundTrip(f *testing.F) {
	f.Add("ops", "http://a/hook", "s3cret", "chat", "http://b/hook", "", "")
	f.Add("ops", "http://a/hook", "one", "ops", "http://a/hook", "two", "/run/secrets/x")
	f.Add("ops", "http://a/hook", config.Redacted, "", "", "x", "")
	f.Fuzz(func(t *testing.T, n1, u1, s1, n2, u2, s2, file string) {
		stored := &RuleSpec{Condition: Condition{Metric: MetricRPS, Service: "echo"},
			Receivers: []Receiver{{Name: n1, URL: u1, Secret: s1}, {Name: n2, URL: u2, Secret: s2, SecretFile: file}}}
		before := *stored
		before.Receivers = slices.Clone(stored.Receivers)
		red := redactRule(stored).(*RuleSpec)
		if !reflect.DeepEqual(&before, stored) {
			t.Fatalf("redact changed the stored rule: %+v", stored)
		}
		for i, r := range red.Receivers {
			if r.Secret != "" && r.Secret != config.Redacted {
				t.Fatalf("receiver %d shows its secret %q", i, r.Secret)
			}
			if r.SecretFile != stored.Receivers[i].SecretFile {
				t.Fatalf("receiver %d: secretFile %q, want %q", i, r.SecretFile, stored.Receivers[i].SecretFile)
			}
		}
		redBefore := *red
		redBefore.Receivers = slices.Clone(red.Receivers)
		back, errs := unredactRule(red, stored)
		if len(errs) > 0 {
			t.Fatalf("redacted rule applied back is refused: %v", errs)
		}
		if !reflect.DeepEqual(back, stored) {
			t.Fatalf("applied back as %+v, stored %+v", back, stored)
		}
		if !reflect.DeepEqual(&redBefore, red) || !reflect.DeepEqual(&before, stored) {
			t.Fatal("unredact changed its arguments")
		}
	})
}
