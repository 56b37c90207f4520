package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/meshlens/meshlens/internal/meshtest"
	"github.com/meshlens/meshlens/store"
	"github.com/meshlens/meshlens/store/storetest"
)

// auditRollout is a canary of reviews with the ServiceEntry and subsets it
// needs, in namespace default (the audit and rollout CLI tests apply it).
const auditRollout = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec: {hosts: [reviews.default.svc.cluster.local], ports: [{number: 9080, name: http, protocol: HTTP}]}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec: {host: reviews, subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]}
---
apiVersion: meshlens.io/v1alpha1
kind: Rollout
metadata: {name: reviews, namespace: default}
spec: {service: reviews, stable: v1, candidate: v2, strategy: {canary: {steps: [10, 50, 100], minDuration: 1h}}}
`

// TestAuditTrailNamesWhoWhereWhatAndTheVersion makes changes the ways
// meshlens takes them (the config dir, the API with an operator token, a
// rollout started by the engine and paused by an operator through the CLI)
// and reads the trail back from ClickHouse through GET /api/v1/audit and
// `meshlens audit`: each change is there once, with who (the token's
// fingerprint, never its value; the file; the engine), from where, the
// diff, and the config version it produced.
func TestAuditTrailNamesWhoWhereWhatAndTheVersion(t *testing.T) {
	const token = "operator-token-0123456789abcdef"
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte(token+" operator\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	configDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(configDir, "echo.yaml"), []byte(fmt.Sprintf(echoConfig, 1, 2)), 0o600); err != nil {
		t.Fatal(err)
	}
	ml := startMeshlens(t, "--tokens", tokens, "--config-dir", configDir, "--data-dir", t.TempDir(), "--clickhouse", storetest.DSN(t))
	url := "http://" + ml.http + "/api/v1"

	for _, body := range []string{routeTo(100, 0), routeTo(90, 10), auditRollout} {
		if code, out := meshtest.HTTP(t, "POST", url+"/config", token, body); code != 200 {
			t.Fatalf("apply: %d %s", code, out)
		}
	}
	if code, out := meshtest.HTTP(t, "DELETE", url+"/config/VirtualService/shop/echo", token, ""); code != 200 {
		t.Fatalf("delete: %d %s", code, out)
	}
	t.Setenv("MESHLENS_TOKEN", token)
	t.Setenv("MESHLENS_SERVER", "")
	meshtest.Eventually(t, 20*time.Second, "the rollout progressing, then paused by the CLI", func() error {
		_, _, err := run(t, runRollout, "pause", "reviews", "--server", "http://"+ml.http)
		return err
	})

	var entries []store.AuditRow
	meshtest.Eventually(t, 20*time.Second, "the trail in ClickHouse", func() error {
		code, out := meshtest.HTTP(t, "GET", url+"/audit?limit=1000", "", "")
		var answer struct{ Entries []store.AuditRow }
		if code != 200 || json.Unmarshal([]byte(out), &answer) != nil {
			return fmt.Errorf("%d %s", code, out)
		}
		entries = answer.Entries
		for _, e := range entries {
			if e.Kind == "Rollout" && e.Action == "pause" {
				return nil
			}
		}
		return fmt.Errorf("%d entries, no rollout pause yet", len(entries))
	})
	byKey := map[string][]store.AuditRow{}
	for _, e := range entries {
		k := e.Kind + "/" + e.Namespace + "/" + e.Name
		byKey[k] = append(byKey[k], e)
		if strings.Contains(e.Actor, token) || strings.Contains(e.Diff, token) {
			t.Errorf("the token itself is in the trail: %+v", e)
		}
	}
	vs := byKey["VirtualService/shop/echo"] // newest first
	if len(vs) != 3 || vs[0].Action != "delete" || vs[1].Action != "update" || vs[2].Action != "create" {
		t.Fatalf("VirtualService entries: %+v", vs)
	}
	for _, e := range vs {
		if !strings.HasPrefix(e.Actor, "token:") || !strings.HasSuffix(e.Actor, "(operator)") || !strings.HasPrefix(e.Remote, "127.0.0.1:") || e.Source != "api" || e.ConfigVersion == 0 {
			t.Errorf("VirtualService %s: who/where/version missing: %+v", e.Action, e)
		}
	}
	if !(vs[0].ConfigVersion > vs[1].ConfigVersion && vs[1].ConfigVersion > vs[2].ConfigVersion) {
		t.Errorf("config versions not increasing: %d, %d, %d", vs[2].ConfigVersion, vs[1].ConfigVersion, vs[0].ConfigVersion)
	}
	if d := vs[1].Diff; !strings.Contains(d, "-       weight: 100") || !strings.Contains(d, "+       weight: 90") || !strings.Contains(d, "+       weight: 10") {
		t.Errorf("update diff does not show the weights changing:\n%s", d)
	}
	if se := byKey["ServiceEntry/shop/echo"]; len(se) != 1 || se[0].Actor != "dir:echo.yaml" || se[0].Source != "dir" || se[0].Action != "create" {
		t.Errorf("config dir entry: %+v", se)
	}
	ro := byKey["Rollout/default/reviews"]
	var actions []string
	for _, e := range ro {
		actions = append(actions, e.Action+" by "+strings.SplitN(e.Actor, " ", 2)[0])
	}
	got := strings.Join(actions, ", ")
	if !regexp.MustCompile(`^pause by token:[0-9a-f]{8}, push by engine, start by engine, create by token:[0-9a-f]{8}$`).MatchString(got) {
		t.Errorf("rollout entries, newest first: %s", got)
	}
	if len(ro) == 4 {
		if push := ro[1]; push.ConfigVersion == 0 || push.Diff != "weights: stable 90%, candidate 10% (step 0)" {
			t.Errorf("the rollout's push names no config version or weights: %+v", push)
		}
	}

	// The CLI.
	out, _, err := run(t, runAudit, "VirtualService", "echo", "-n", "shop", "--diff", "--server", "http://"+ml.http)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(out, "\n")
	if !strings.HasPrefix(lines[0], "TIME") || !strings.Contains(lines[1], "delete") || !strings.Contains(out, "VirtualService/shop/echo") || !strings.Contains(out, "+       weight: 90") {
		t.Errorf("meshlens audit:\n%s", out)
	}
}
