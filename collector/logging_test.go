package collector_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshlens/meshlens/collector"
	"github.com/meshlens/meshlens/internal/meshtest"
	"github.com/meshlens/meshlens/store/storetest"
)

// runCollectorLogging runs a collector whose logger is JSON at level until
// it is ready and stopped again, and returns what it logged.
func runCollectorLogging(t *testing.T, level slog.Level) string {
	t.Helper()
	out := &meshtest.LogBuffer{}
	logger := slog.New(slog.NewJSONHandler(out, &slog.HandlerOptions{Level: level}))
	cfg := collector.DefaultConfig()
	cfg.OTLPGRPC, cfg.OTLPHTTP, cfg.ALS = freeAddr(t), freeAddr(t), freeAddr(t)
	c, err := collector.New(cfg, t.TempDir(), storetest.Open(t), nil, nil, prometheus.NewRegistry(), logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	waitFor(t, "collector ready", c.Ready)
	time.Sleep(100 * time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// TestCollectorComponentsLogThroughMeshlensLoggerAtItsLevel checks the OTel
// collector's own components (otelcol, the OTLP receiver), which used a
// zap logger of their own fixed at warn, log through the
// logger meshlens gives the collector: as its JSON lines, with their
// fields, and only at or above its level.
func TestCollectorComponentsLogThroughMeshlensLoggerAtItsLevel(t *testing.T) {
	debug := runCollectorLogging(t, slog.LevelDebug)
	var fromOtelcol int
	for _, line := range strings.Split(strings.TrimSpace(debug), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("a log line that is not meshlens' JSON: %q", line)
		}
		if rec["msg"] == "Everything is ready. Begin running and processing data." {
			fromOtelcol++
		}
		if rec["msg"] == "Starting GRPC server" && rec["endpoint"] != nil {
			fromOtelcol++
		}
	}
	if fromOtelcol < 2 {
		t.Errorf("at debug, the collector's own lines (otelcol ready, the OTLP receiver's with its endpoint field) missing from:\n%s", debug)
	}
	if warn := runCollectorLogging(t, slog.LevelWarn); strings.Contains(warn, "Everything is ready") || strings.Contains(warn, `"level":"INFO"`) || strings.Contains(warn, `"level":"DEBUG"`) {
		t.Errorf("at warn, lines below warn were logged:\n%s", warn)
	}
}
