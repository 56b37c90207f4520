// Package promtest runs a real Prometheus (the Debian package, installed by
// scripts/deps.sh for tests) on loopback for the tests that need one, and
// waits for its scrapes.
package promtest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// Job is the job name of the targets; their series carry job="mesh".
const Job = "mesh"

// Config says what Prometheus scrapes.
type Config struct {
	Targets  []string      // host:port
	Path     string        // metrics path; default /metrics
	Interval time.Duration // scrape interval (and timeout); default 1s
	Token    string        // bearer token sent with every scrape, if any
	Listen   string        // Prometheus' own address; default a free loopback port
	// MetricRelabel is the job's metric_relabel_configs, YAML list items
	// (e.g. `{source_labels: [reporter], regex: source, action: drop}`).
	MetricRelabel []string
}

// Start runs Prometheus with a temporary data directory and returns its URL.
// It stops with the test; its log is printed when the test failed.
func Start(t testing.TB, cfg Config) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("prometheus binary not found (Debian package prometheus, installed by scripts/deps.sh test): %v", err)
	}
	if cfg.Path == "" {
		cfg.Path = "/metrics"
	}
	if cfg.Interval == 0 {
		cfg.Interval = time.Second
	}
	if cfg.Listen == "" {
		cfg.Listen = FreeAddr(t)
	}
	dir := t.TempDir()
	var targets []string
	for _, tg := range cfg.Targets {
		targets = append(targets, fmt.Sprintf("%q", tg))
	}
	job := "" // the job's settings beyond its path and targets
	if cfg.Token != "" {
		job = fmt.Sprintf("    authorization: {credentials: %q}\n", cfg.Token)
	}
	for i, r := range cfg.MetricRelabel {
		if i == 0 {
			job += "    metric_relabel_configs:\n"
		}
		job += "      - " + r + "\n"
	}
	yml := fmt.Sprintf(`global:
  scrape_interval: %s
  scrape_timeout: %s
  evaluation_interval: %s
scrape_configs:
  - job_name: %s
    metrics_path: %q
%s    static_configs:
      - targets: [%s]
`, cfg.Interval, cfg.Interval, cfg.Interval, Job, cfg.Path, job, strings.Join(targets, ", "))
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin,
		"--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+cfg.Listen,
		"--log.level=warn")
	logf, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start prometheus: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		logf.Close()
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "prometheus.log"))
			t.Logf("prometheus log:\n%s", log)
		}
	})
	u := "http://" + cfg.Listen
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(u + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return u
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	log, _ := os.ReadFile(filepath.Join(dir, "prometheus.log"))
	t.Fatalf("prometheus at %s not ready within 30s:\n%s", u, log)
	return ""
}

// FreeAddr returns a loopback address free at the time of the call:
// Prometheus cannot report a port it picked, so tests pick one for it.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// API is a client of the Prometheus at url.
func API(t testing.TB, url string) promv1.API {
	t.Helper()
	c, err := api.NewClient(api.Config{Address: url})
	if err != nil {
		t.Fatal(err)
	}
	return promv1.NewAPI(c)
}

// LastScrapeAfter waits until every target has been scraped successfully
// after the given time and returns the newest scrape time, in milliseconds
// as Prometheus keeps it.
func LastScrapeAfter(t testing.TB, p promv1.API, after time.Time, timeout time.Duration) time.Time {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if ts, ok := lastScrapes(ctx, p); ok && ts[0].After(after) {
			return ts[1]
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no successful scrape of every target after %v within %v", after, timeout)
	return time.Time{}
}

// lastScrapes returns the oldest and the newest of the targets' last
// scrapes, when there are targets and the last scrape of each succeeded. A
// target not scraped yet has no sample of up at all, so the targets are
// counted from Prometheus' own list.
func lastScrapes(ctx context.Context, p promv1.API) ([2]time.Time, bool) {
	targets, err := p.Targets(ctx)
	if err != nil || len(targets.Active) == 0 {
		return [2]time.Time{}, false
	}
	v, _, _, err := p.Query(ctx, `timestamp(up{job="`+Job+`"}) and (up{job="`+Job+`"} == 1)`, time.Now())
	vec, ok := v.(model.Vector)
	if err != nil || !ok || len(vec) != len(targets.Active) {
		return [2]time.Time{}, false
	}
	var out [2]time.Time
	for i, s := range vec {
		ts := time.UnixMilli(int64(float64(s.Value)*1000 + 0.5))
		if i == 0 || ts.Before(out[0]) {
			out[0] = ts
		}
		if ts.After(out[1]) {
			out[1] = ts
		}
	}
	return out, true
}
