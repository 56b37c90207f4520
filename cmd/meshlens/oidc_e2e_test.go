package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/meshlens/meshlens/internal/meshtest"
	"github.com/meshlens/meshlens/internal/oidctest"
	"github.com/meshlens/meshlens/store"
	"github.com/meshlens/meshlens/store/storetest"
)

// teamRollout is a canary of reviews in namespace %[1]s with what it needs.
const teamRollout = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: %[1]s}
spec: {hosts: [reviews.%[1]s.svc.cluster.local], ports: [{number: 9080, name: http, protocol: HTTP}]}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: %[1]s}
spec: {host: reviews, subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]}
---
apiVersion: meshlens.io/v1alpha1
kind: Rollout
metadata: {name: reviews, namespace: %[1]s}
spec: {service: reviews, stable: v1, candidate: v2, strategy: {canary: {steps: [10, 50, 100], minDuration: 1h}}}
`

func serviceEntry(ns, name string) string {
	return fmt.Sprintf("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: %s, namespace: %s}\n"+
		"spec: {hosts: [%s.%s.example.com], ports: [{number: 80, name: http, protocol: HTTP}]}\n", name, ns, name, ns)
}

// TestOIDCRoleMatrix runs an OIDC issuer (discovery and JWKS on loopback,
// keys the test makes) and a real meshlens serve trusting it, beside a
// tokens file with static tokens, and walks every caller — OIDC viewer,
// operator of team-a and admin, a valid token without a role, expired,
// wrong audience, wrong issuer, unknown key id, bad signature, no token,
// and static operator / operator:team-a tokens — over every class of
// endpoint: reads, config changes in team-a, team-b and the mesh root
// namespace, rollout actions in team-a and team-b, and the Alertmanager
// webhook. Each answer's status is exact and its error says why. The
// audit trail names the OIDC subject; a rotated issuer key is picked up at
// its first token and a retired one stops being accepted.
func TestOIDCRoleMatrix(t *testing.T) {
	iss := oidctest.New(t)
	const aud = "meshlens-api"
	const setup, staticOp, staticTeamA = "setup-admin-token-0123456789", "static-operator-token-0123456789", "static-team-a-token-0123456789"
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte(setup+" admin\n"+staticOp+" operator\n"+staticTeamA+" operator:team-a\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ml := startMeshlens(t, "--tokens", tokens, "--data-dir", t.TempDir(), "--clickhouse", storetest.DSN(t),
		"--oidc-issuer", iss.URL, "--oidc-audience", aud, "--oidc-keys-max-age", "2s")
	api := "http://" + ml.http + "/api/v1"
	call := func(method, path, token, body string) (int, string) {
		t.Helper()
		return meshtest.HTTP(t, method, api+path, token, body)
	}

	// Fixtures: a rollout progressing in team-a and team-b, an object of
	// each namespace no refused caller may delete.
	for _, body := range []string{fmt.Sprintf(teamRollout, "team-a"), fmt.Sprintf(teamRollout, "team-b"),
		serviceEntry("team-a", "fixture"), serviceEntry("team-b", "fixture"), serviceEntry("istio-system", "fixture")} {
		if code, out := call("POST", "/config", setup, body); code != 200 {
			t.Fatalf("setup: %d %s", code, out)
		}
	}
	rolloutState := func(ns string) string {
		_, out := call("GET", "/rollouts/"+ns+"/reviews", setup, "")
		var st struct{ State string }
		_ = json.Unmarshal([]byte(out), &st)
		return st.State
	}
	for _, ns := range []string{"team-a", "team-b"} {
		meshtest.Eventually(t, 20*time.Second, ns+"'s rollout started", func() error {
			if s := rolloutState(ns); s != "progressing" {
				return fmt.Errorf("state %q", s)
			}
			return nil
		})
	}

	claims := func(sub string, roles any) map[string]any { return iss.Claims(sub, aud, roles) }
	expired := claims("alice@example.com", []any{"admin"})
	expired["exp"] = time.Now().Add(-10 * time.Minute).Unix()
	wrongIss := claims("alice@example.com", []any{"admin"})
	wrongIss["iss"] = "https://sso.evil.example"
	callers := []struct {
		name, token string
		// role is the behaviour expected: viewer, team-a (operator of
		// team-a), admin, or a refusal: status and why for every call.
		role        string
		status      int
		why         string
		changesRead bool // reads are refused too
	}{
		{name: "OIDC viewer", token: iss.Sign(t, claims("vera@example.com", []any{"viewer"})), role: "viewer"},
		{name: "OIDC operator of team-a", token: iss.Sign(t, claims("alice@example.com", "operator:team-a")), role: "team-a"},
		{name: "OIDC admin", token: iss.Sign(t, claims("root@example.com", []any{"admin"})), role: "admin"},
		{name: "static operator (every namespace)", token: staticOp, role: "admin"},
		{name: "static operator:team-a", token: staticTeamA, role: "team-a"},
		{name: "OIDC without a role", token: iss.Sign(t, claims("nobody@example.com", nil)), status: 403, changesRead: true,
			why: `oidc:nobody@example.com has no meshlens role: its claim \"meshlens_roles\"`},
		{name: "expired", token: iss.Sign(t, expired), status: 401, changesRead: true, why: "OIDC token refused: expired at "},
		{name: "wrong audience", token: iss.Sign(t, iss.Claims("alice@example.com", "grafana", []any{"admin"})), status: 401, changesRead: true,
			why: `OIDC token refused: audience [\"grafana\"] does not include \"meshlens-api\" (--oidc-audience)`},
		{name: "wrong issuer", token: iss.Sign(t, wrongIss), status: 401, changesRead: true,
			why: `OIDC token refused: issued by \"https://sso.evil.example\", not by \"` + iss.URL + `\" (--oidc-issuer)`},
		{name: "unknown key id", token: iss.Forge(t, "key-77", claims("alice@example.com", []any{"admin"})), status: 401, changesRead: true,
			why: `OIDC token refused: its key id \"key-77\" is not among the issuer's signing keys`},
		{name: "bad signature", token: iss.Forge(t, "key-1", claims("alice@example.com", []any{"admin"})), status: 401, changesRead: true,
			why: `OIDC token refused: its signature does not verify with the issuer's key \"key-1\"`},
		{name: "no token", token: "", status: 401, why: "changes need an operator token: send Authorization: Bearer TOKEN"},
	}

	type answer struct {
		status int
		why    string
	}
	ok := answer{200, ""}
	notOperator := answer{403, "this change needs the operator role"}
	onlyTeamA := func(ns string) answer { return answer{403, "may change namespace team-a only, not " + ns} }
	root := answer{403, "namespace istio-system is the mesh root namespace, whose config applies to every namespace: changing it needs admin or operator (of all namespaces)"}
	clusterWide := answer{403, "this call may change any namespace, so it needs admin or operator (of all namespaces)"}
	classes := []struct {
		name string
		// do makes the calls of the class as caller n (a distinct object
		// name per caller) and returns the last answer.
		do   func(n int, token string, allowed bool) (int, string)
		want map[string]answer // by role
	}{
		{"reads", func(_ int, token string, _ bool) (int, string) {
			for _, p := range []string{"/graph", "/config", "/rollouts", "/audit"} {
				if code, out := call("GET", p, token, ""); code != 200 {
					return code, out
				}
			}
			return 200, ""
		}, map[string]answer{"viewer": ok, "team-a": ok, "admin": ok}},
		{"config of team-a", applyThenDelete(call, "team-a"), map[string]answer{"viewer": notOperator, "team-a": ok, "admin": ok}},
		{"config of team-b", applyThenDelete(call, "team-b"), map[string]answer{"viewer": notOperator, "team-a": onlyTeamA("team-b"), "admin": ok}},
		{"config of the mesh root namespace", applyThenDelete(call, "istio-system"), map[string]answer{"viewer": notOperator, "team-a": root, "admin": ok}},
		{"rollout action in team-a", pauseResume(call, "team-a"), map[string]answer{"viewer": notOperator, "team-a": ok, "admin": ok}},
		{"rollout action in team-b", pauseResume(call, "team-b"), map[string]answer{"viewer": notOperator, "team-a": onlyTeamA("team-b"), "admin": ok}},
		{"rollout apply in team-b", func(_ int, token string, _ bool) (int, string) {
			return call("POST", "/rollouts", token, strings.SplitN(fmt.Sprintf(teamRollout, "team-b"), "---\n", 3)[2])
		}, map[string]answer{"viewer": notOperator, "team-a": {403, "Rollout/team-b/reviews: forbidden: " + ""}, "admin": ok}},
		{"Alertmanager webhook", func(_ int, token string, _ bool) (int, string) {
			return call("POST", "/alerts/alertmanager", token, `{"version":"4","status":"firing","alerts":[]}`)
		}, map[string]answer{"viewer": notOperator, "team-a": clusterWide, "admin": ok}},
	}
	for ci, c := range callers {
		for _, cl := range classes {
			want := answer{c.status, c.why}
			if c.role != "" {
				want = cl.want[c.role]
			} else if cl.name == "reads" && !c.changesRead {
				want = ok // reads are open on a loopback listener
			}
			code, out := cl.do(ci, c.token, want.status == 200)
			if code != want.status || !strings.Contains(out, want.why) {
				t.Errorf("%s, %s: %d %s\n\twant %d with %q", c.name, cl.name, code, out, want.status, want.why)
			}
			if code >= 400 && !strings.HasPrefix(out, `{"error":`) {
				t.Errorf("%s, %s: error body %s is not {\"error\": ...}", c.name, cl.name, out)
			}
		}
	}
	// Nothing a refused caller tried happened.
	for _, ns := range []string{"team-a", "team-b", "istio-system"} {
		if code, out := call("GET", "/config/ServiceEntry/"+ns+"/fixture", "", ""); code != 200 {
			t.Errorf("fixture of %s gone: %d %s", ns, code, out)
		}
	}
	for _, ns := range []string{"team-a", "team-b"} {
		if s := rolloutState(ns); s != "progressing" {
			t.Errorf("%s's rollout is %s after the matrix, want progressing", ns, s)
		}
	}

	// The audit trail names the OIDC subject and its grant, never the token.
	meshtest.Eventually(t, 20*time.Second, "the OIDC callers' changes in the audit trail", func() error {
		code, out := call("GET", "/audit?limit=1000", "", "")
		var a struct{ Entries []store.AuditRow }
		if code != 200 || json.Unmarshal([]byte(out), &a) != nil {
			return fmt.Errorf("%d %s", code, out)
		}
		want := map[string]string{
			"ServiceEntry/team-a/x-1 create": "oidc:alice@example.com (operator:team-a)",
			"ServiceEntry/team-a/x-1 delete": "oidc:alice@example.com (operator:team-a)",
			"ServiceEntry/team-b/x-2 create": "oidc:root@example.com (admin)",
			"Rollout/team-a/reviews pause":   "oidc:alice@example.com (operator:team-a)",
		}
		for _, e := range a.Entries {
			k := e.Kind + "/" + e.Namespace + "/" + e.Name + " " + e.Action
			if who, ok := want[k]; ok && e.Actor == who && strings.HasPrefix(e.Remote, "127.0.0.1:") {
				delete(want, k)
			}
			for _, c := range callers {
				if c.token != "" && (strings.Contains(e.Actor, c.token) || strings.Contains(e.Diff, c.token)) {
					return fmt.Errorf("a token is in the trail: %+v", e)
				}
			}
		}
		if len(want) > 0 {
			return fmt.Errorf("not in the trail (or another actor): %v", want)
		}
		return nil
	})

	// The issuer rotates its key: the first token of the new key is
	// accepted (meshlens fetches the keys at most once a second, so within
	// about one); the old key still verifies while published, and not once
	// retired and the keys older than --oidc-keys-max-age.
	oldToken := iss.Sign(t, claims("root@example.com", []any{"admin"}))
	newKey := iss.Rotate(t, jose.ES256)
	newToken := iss.SignWith(t, newKey, claims("root@example.com", []any{"admin"}))
	start := time.Now()
	meshtest.Eventually(t, 30*time.Second, "a token of the rotated key accepted", func() error {
		if code, out := call("POST", "/config", newToken, serviceEntry("team-b", "rotated")); code != 200 {
			return fmt.Errorf("%d %s", code, out)
		}
		return nil
	})
	t.Logf("token of the rotated key accepted after %s", time.Since(start).Round(time.Millisecond))
	if code, out := call("GET", "/config", oldToken, ""); code != 200 {
		t.Errorf("old key, still published: %d %s", code, out)
	}
	iss.Retire("key-1")
	start = time.Now()
	meshtest.Eventually(t, 30*time.Second, "the retired key refused", func() error {
		code, out := call("GET", "/config", oldToken, "")
		if code == 401 && strings.Contains(out, `its key id \"key-1\" is not among the issuer's signing keys`) {
			return nil
		}
		return fmt.Errorf("%d %s", code, out)
	})
	t.Logf("retired key refused after %s (--oidc-keys-max-age 2s)", time.Since(start).Round(time.Millisecond))
	if code, out := call("GET", "/config", newToken, ""); code != 200 {
		t.Errorf("rotated key after the old one retired: %d %s", code, out)
	}
}

// applyThenDelete applies ServiceEntry x-N in ns and deletes it again when
// the caller may; otherwise it tries both and also deleting the fixture,
// and returns the first refusal.
func applyThenDelete(call func(method, path, token, body string) (int, string), ns string) func(int, string, bool) (int, string) {
	return func(n int, token string, allowed bool) (int, string) {
		name := fmt.Sprintf("x-%d", n)
		code, out := call("POST", "/config", token, serviceEntry(ns, name))
		if code != 200 && allowed {
			return code, out
		}
		target := name
		if !allowed {
			target = "fixture"
		}
		dcode, dout := call("DELETE", "/config/ServiceEntry/"+ns+"/"+target, token, "")
		if code != dcode {
			return dcode, "apply and delete differ: " + out + " / " + dout
		}
		return dcode, dout
	}
}

// pauseResume pauses ns's rollout and resumes it when the caller may.
func pauseResume(call func(method, path, token, body string) (int, string), ns string) func(int, string, bool) (int, string) {
	return func(_ int, token string, allowed bool) (int, string) {
		code, out := call("POST", "/rollouts/"+ns+"/reviews/pause", token, "")
		if code != 200 || !allowed {
			return code, out
		}
		return call("POST", "/rollouts/"+ns+"/reviews/resume", token, "")
	}
}
