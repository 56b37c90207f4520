package alerting

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/meshlens/meshlens/internal/meshtest"
	"github.com/meshlens/meshlens/rollout"
)

const prometheusBin = "/usr/bin/prometheus"

// The full external loop: the candidate's own metrics (Istio's
// istio_requests_total) scraped by a real Prometheus, whose alerting rule
// fires to a real Alertmanager, whose webhook rolls the rollout back.
func TestPrometheusRuleThroughAlertmanagerRollsBackRollout(t *testing.T) {
	if _, err := os.Stat(prometheusBin); err != nil {
		t.Skipf("Prometheus not installed: %v", err)
	}
	e := newEnv(t, Options{})
	e.startRollout("echo")
	am := startAlertmanager(t, e.srv.URL+"/api/v1/alerts/alertmanager")

	reg := prometheus.NewRegistry()
	reqs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "istio_requests_total", Help: "Requests."},
		[]string{"destination_service_name", "destination_service_namespace", "destination_version", "response_code"})
	reg.MustRegister(reqs)
	target := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(target.Close)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { // the candidate serves, half of it failing
		for ctx.Err() == nil {
			reqs.WithLabelValues("echo", "default", "v1", "200").Add(10)
			reqs.WithLabelValues("echo", "default", "v2", "200").Add(5)
			reqs.WithLabelValues("echo", "default", "v2", "503").Add(5)
			time.Sleep(100 * time.Millisecond)
		}
	}()

	dir := t.TempDir()
	rules := `groups:
- name: canary
  rules:
  - alert: CanaryErrorRate
    expr: |
      sum by (destination_service_name, destination_service_namespace, destination_version) (rate(istio_requests_total{response_code=~"5.."}[5s]))
        / sum by (destination_service_name, destination_service_namespace, destination_version) (rate(istio_requests_total[5s])) > 0.1
    labels: {severity: page}
    annotations: {summary: "{{ $labels.destination_version }} fails"}
`
	cfg := fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [%s]
alerting: {alertmanagers: [{static_configs: [{targets: ["%s"]}]}]}
scrape_configs:
- job_name: echo
  static_configs: [{targets: ["%s"]}]
`, filepath.Join(dir, "rules.yml"), strings.TrimPrefix(am, "http://"), strings.TrimPrefix(target.URL, "http://"))
	for name, body := range map[string]string{"rules.yml": rules, "prometheus.yml": cfg} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cmd := exec.CommandContext(ctx, prometheusBin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = meshtest.Writer(t), meshtest.Writer(t)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	waitFor(t, 20*time.Second, "Prometheus ready", func() bool {
		resp, err := http.Get("http://" + addr + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})

	st := e.waitRollout("echo", rollout.RolledBack, 60*time.Second)
	var by string
	for _, h := range st.History {
		if h.To == rollout.RollingBack {
			by = h.Source + ": " + h.Message
		}
	}
	if !strings.HasPrefix(by, "alertmanager: Alertmanager alert CanaryErrorRate") {
		t.Fatalf("rollback not caused by the Prometheus rule: %q", by)
	}
	// The rollback happens inside the webhook call, just before the alert
	// is listed: wait for the listing.
	waitFor(t, 5*time.Second, "the alert listed", func() bool { return len(e.al.Firing()) > 0 })
	firing := e.al.Firing()
	if len(firing) == 0 || firing[0].Labels["destination_version"] != "v2" {
		t.Fatalf("firing: %+v", firing)
	}
}
