package collector_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// telemetrygen finds the collector-contrib load generator that `make test`
// installs into .run/bin.
func telemetrygen(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("TELEMETRYGEN"); p != "" {
		return p
	}
	_, file, _, _ := runtime.Caller(0)
	local := filepath.Join(filepath.Dir(file), "..", ".run", "bin", "telemetrygen")
	if _, err := os.Stat(local); err == nil {
		return local
	}
	if p, err := exec.LookPath("telemetrygen"); err == nil {
		return p
	}
	t.Fatal("telemetrygen not found: run `make test` (it installs it into .run/bin) or set TELEMETRYGEN")
	return ""
}

func runTelemetrygen(t *testing.T, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, telemetrygen(t), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("telemetrygen %v: %v\n%s", args, err, out)
	}
}

func TestTelemetrygenTracesLogsAndMetricsAreIngestedExactly(t *testing.T) {
	h := startCollector(t)
	// 2 workers x 150 traces x (1 parent + 2 children) spans, over gRPC.
	runTelemetrygen(t, "traces", "--otlp-insecure", "--otlp-endpoint", h.cfg.OTLPGRPC,
		"--workers", "2", "--traces", "150", "--child-spans", "2", "--rate", "0", "--service", "tgen")
	// 2 workers x 400 logs over gRPC, and 300 more over OTLP/HTTP.
	runTelemetrygen(t, "logs", "--otlp-insecure", "--otlp-endpoint", h.cfg.OTLPGRPC,
		"--workers", "2", "--logs", "400", "--rate", "0")
	runTelemetrygen(t, "logs", "--otlp-insecure", "--otlp-http", "--otlp-endpoint", h.cfg.OTLPHTTP,
		"--workers", "1", "--logs", "300", "--rate", "0")

	// 2 workers x 250 sum data points, over OTLP/HTTP.
	runTelemetrygen(t, "metrics", "--otlp-insecure", "--otlp-http", "--otlp-endpoint", h.cfg.OTLPHTTP,
		"--workers", "2", "--metrics", "250", "--rate", "0", "--metric-type", "Sum")

	waitCount(t, h.store, "SELECT count() FROM "+h.store.Table("spans")+" WHERE service = 'tgen'", 2*150*3)
	waitCount(t, h.store, "SELECT count() FROM "+h.store.Table("metric_points")+" WHERE type = 'sum'", 2*250)
	waitCount(t, h.store, "SELECT count() FROM "+h.store.Table("logs"), 2*400+300)
	if got := metricValue(t, h.reg, "meshlens_ingest_written_total"); got < 2*150*3+2*400+300+2*250 {
		t.Fatalf("meshlens_ingest_written_total = %v, want at least every span, log and point", got)
	}
}
