package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/meshlens/meshlens/internal/meshtest"
)

// replicaAlertRule fires when reviews in shop fails more than 20% of at
// least 20 requests over a minute.
const replicaAlertRule = `apiVersion: meshlens.io/v1alpha1
kind: AlertRule
metadata: {name: reviews-errors, namespace: shop}
spec:
  condition: {metric: errorRate, service: reviews, threshold: 0.2, window: 1m, minRequests: 20}
  labels: {severity: page}
`

type alertsAnswer struct {
	Alerts []struct {
		Source string            `json:"source"`
		Rule   string            `json:"rule"`
		State  string            `json:"state"`
		Labels map[string]string `json:"labels"`
	} `json:"alerts"`
	Partial bool `json:"partial"`
	Missing []struct {
		Replica string `json:"replica"`
		Error   string `json:"error"`
	} `json:"missing"`
}

type seriesAnswer struct {
	Versions []struct {
		Version string `json:"version"`
		Points  []struct {
			Requests uint64 `json:"requests"`
		} `json:"points"`
	} `json:"versions"`
	Partial bool `json:"partial"`
	Missing []struct {
		Replica string `json:"replica"`
	} `json:"missing"`
}

func (s seriesAnswer) requests(version string) uint64 {
	var n uint64
	for _, v := range s.Versions {
		if v.Version == version {
			for _, p := range v.Points {
				n += p.Requests
			}
		}
	}
	return n
}

func (rs *replicaSet) get(t testing.TB, i int, path string, v any) error {
	code, body := meshtest.HTTP(t, "GET", "http://"+rs.procs[i].http+path, rs.token, "")
	if code != 200 {
		return fmt.Errorf("GET %s: %d %s", path, code, body)
	}
	return json.Unmarshal([]byte(body), v)
}

// A service's time series and the alerts answer for the whole mesh on any
// of two replicas. Replica 0 acts (evaluates alert rules), replica 1 is
// started --follower. Replica 0 gets 10 good requests of reviews, replica
// 1 30 of which half fail: the series on either one adds up to 40, and the
// rule (more than 20% errors of at least 20 requests), which fires only
// on the merged numbers, is listed firing by the follower, which does not
// evaluate it. An Alertmanager alert posted to the follower is listed once
// by both. Replica 0 killed: the follower's series and alerts are partial,
// naming it, and the rule's alert, which nobody evaluates, is gone.
func TestReplicasAnswerServiceSeriesAndAlertsForTheWholeMesh(t *testing.T) {
	configDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(configDir, "rule.yaml"), []byte(replicaAlertRule), 0o600); err != nil {
		t.Fatal(err)
	}
	rs := startReplicasWith(t, 2, func(i int) []string {
		a := []string{"--clickhouse", "clickhouse://127.0.0.1:1/x", "--clickhouse-wait", "0s", "--config-dir", configDir}
		if i == 1 {
			a = append(a, "--follower")
		}
		return a
	})
	ctx := context.Background()
	if err := serverSpans(ctx, rs.otlp[0], "shop", "reviews", "v1", 10, 0); err != nil {
		t.Fatal(err)
	}
	if err := serverSpans(ctx, rs.otlp[1], "shop", "reviews", "v1", 30, 2); err != nil {
		t.Fatal(err)
	}

	for i := range rs.procs {
		meshtest.Eventually(t, 20*time.Second, fmt.Sprintf("replica %d's series of reviews count both replicas' requests", i), func() error {
			var s seriesAnswer
			if err := rs.get(t, i, "/api/v1/services/shop/reviews?range=5m", &s); err != nil {
				return err
			}
			if got := s.requests("v1"); got != 40 || s.Partial {
				return fmt.Errorf("v1 requests %d (want 10+30), partial %v %+v", got, s.Partial, s.Missing)
			}
			return nil
		})
	}

	firing := func(a alertsAnswer, source, what string) bool {
		for _, al := range a.Alerts {
			if al.Source == source && (al.Rule == what || al.Labels["alertname"] == what) && al.State == "firing" {
				return true
			}
		}
		return false
	}
	for i := range rs.procs {
		meshtest.Eventually(t, 30*time.Second, fmt.Sprintf("replica %d lists the rule's alert firing on the merged numbers", i), func() error {
			var a alertsAnswer
			if err := rs.get(t, i, "/api/v1/alerts", &a); err != nil {
				return err
			}
			if !firing(a, "rule", "shop/reviews-errors") || a.Partial {
				return fmt.Errorf("alerts %+v, partial %v", a.Alerts, a.Partial)
			}
			return nil
		})
	}

	am := `{"version":"4","status":"firing","receiver":"meshlens","alerts":[{"status":"firing",
		"labels":{"alertname":"DiskFull","instance":"db-0"},"startsAt":"` + time.Now().UTC().Format(time.RFC3339) + `"}]}`
	if code, body := meshtest.HTTP(t, "POST", "http://"+rs.procs[1].http+"/api/v1/alerts/alertmanager", rs.token, am); code != 200 {
		t.Fatalf("Alertmanager webhook to the follower: %d %s", code, body)
	}
	for i := range rs.procs {
		var a alertsAnswer
		if err := rs.get(t, i, "/api/v1/alerts", &a); err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, al := range a.Alerts {
			if al.Labels["alertname"] == "DiskFull" {
				n++
			}
		}
		if n != 1 || !firing(a, "rule", "shop/reviews-errors") {
			t.Errorf("replica %d: %d DiskFull alerts (want 1, from the follower's webhook) in %+v", i, n, a.Alerts)
		}
	}

	rs.procs[0].Kill()
	var s seriesAnswer
	if err := rs.get(t, 1, "/api/v1/services/shop/reviews?range=5m", &s); err != nil {
		t.Fatal(err)
	}
	if got := s.requests("v1"); got != 30 || !s.Partial || len(s.Missing) != 1 || s.Missing[0].Replica != rs.procs[0].http {
		t.Errorf("series with replica 0 down: v1 requests %d (want its own 30), partial %v, missing %+v (want %s)", got, s.Partial, s.Missing, rs.procs[0].http)
	}
	var a alertsAnswer
	if err := rs.get(t, 1, "/api/v1/alerts", &a); err != nil {
		t.Fatal(err)
	}
	if !a.Partial || len(a.Missing) != 1 || a.Missing[0].Replica != rs.procs[0].http || a.Missing[0].Error == "" ||
		firing(a, "rule", "shop/reviews-errors") || !firing(a, "alertmanager", "DiskFull") {
		t.Errorf("alerts with the acting replica down: %+v partial %v missing %+v: want partial naming %s and why, its rule's alert gone, the follower's DiskFull kept",
			a.Alerts, a.Partial, a.Missing, rs.procs[0].http)
	}
}
