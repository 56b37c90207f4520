package alerting

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/meshlens/meshlens/internal/meshtest"
	"github.com/meshlens/meshlens/rollout"
)

const (
	alertmanagerBin = "/usr/bin/prometheus-alertmanager"
	amtoolBin       = "/usr/bin/amtool"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startAlertmanager runs a real Alertmanager on loopback whose only
// receiver is meshlens' webhook, authenticated with the operator token.
func startAlertmanager(t *testing.T, webhookURL string) string {
	t.Helper()
	if _, err := os.Stat(alertmanagerBin); err != nil {
		t.Skipf("Alertmanager not installed: %v", err)
	}
	dir := t.TempDir()
	cfg := fmt.Sprintf(`route:
  receiver: meshlens
  group_by: [alertname]
  group_wait: 100ms
  group_interval: 1s
  repeat_interval: 1h
receivers:
- name: meshlens
  webhook_configs:
  - url: %s
    send_resolved: true
    http_config:
      authorization: {type: Bearer, credentials: %s}
`, webhookURL, operatorToken)
	if err := os.WriteFile(filepath.Join(dir, "am.yml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, alertmanagerBin, "--config.file="+filepath.Join(dir, "am.yml"),
		"--storage.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr, "--cluster.listen-address=",
		"--log.level=warn")
	cmd.Stdout, cmd.Stderr = meshtest.Writer(t), meshtest.Writer(t)
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	url := "http://" + addr
	waitFor(t, 20*time.Second, "Alertmanager ready", func() bool {
		resp, err := http.Get(url + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return url
}

func TestRealAlertmanagerWebhookRollsBackRollout(t *testing.T) {
	e := newEnv(t, Options{})
	e.startRollout("echo")
	am := startAlertmanager(t, e.srv.URL+"/api/v1/alerts/alertmanager")

	out, err := exec.Command(amtoolBin, "alert", "add", "CanaryErrorRate", "rollout=echo", "namespace=default",
		"severity=page", "--annotation=summary=canary fails", "--alertmanager.url="+am).CombinedOutput()
	if err != nil {
		t.Fatalf("amtool alert add: %v: %s", err, out)
	}
	st := e.waitRollout("echo", rollout.RolledBack, 20*time.Second)
	var by string
	for _, h := range st.History {
		if h.To == rollout.RollingBack {
			by = h.Source + ": " + h.Message
		}
	}
	t.Logf("rolled back by %s", by)
	if by == "" || by[:len("alertmanager")] != "alertmanager" {
		t.Fatalf("rollback not attributed to Alertmanager: %q", by)
	}
	// The rollback happens inside the webhook call, just before the alert
	// is listed: wait for the listing.
	waitFor(t, 5*time.Second, "the alert listed", func() bool { return len(e.al.Firing()) > 0 })
	firing := e.al.Firing()
	if len(firing) != 1 || firing[0].Source != "alertmanager" || firing[0].Labels["alertname"] != "CanaryErrorRate" {
		t.Fatalf("GET /alerts does not list Alertmanager's alert: %+v", firing)
	}
}
