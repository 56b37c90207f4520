package main

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// TestClickHouseOutageAndRestartLoseNothing sends spans steadily while
// ClickHouse is stopped for 30 s and meshlens itself is restarted in the
// middle of the outage; afterwards every span sent is in ClickHouse.
func TestClickHouseOutageAndRestartLoseNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("the outage lasts 30s")
	}
	ch := startClickHouse(t)
	dataDir := t.TempDir()
	otlp := freeAddr(t)
	args := []string{"--clickhouse", ch.DSN(), "--data-dir", dataDir, "--otlp-grpc", otlp, "--otlp-http", "", "--als", "", "--clickhouse-wait", "2s"}
	ml := startMeshlens(t, args...)

	exp, err := otlptracegrpc.New(context.Background(), otlptracegrpc.WithEndpoint(otlp), otlptracegrpc.WithInsecure(),
		otlptracegrpc.WithTimeout(time.Minute), // rides out the restart of meshlens
		otlptracegrpc.WithRetry(otlptracegrpc.RetryConfig{Enabled: true, InitialInterval: 100 * time.Millisecond, MaxInterval: time.Second, MaxElapsedTime: 2 * time.Minute}))
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(100*time.Millisecond), sdktrace.WithMaxQueueSize(100_000)),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", "steady"))))
	tracer := tp.Tracer("steady")

	var sent atomic.Int64
	stop := make(chan struct{})
	senderDone := make(chan struct{})
	go func() { // ~400 spans/s until told to stop
		defer close(senderDone)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				for i := 0; i < 4; i++ {
					_, sp := tracer.Start(context.Background(), "GET /", trace.WithSpanKind(trace.SpanKindServer))
					sp.End()
					sent.Add(1)
				}
			}
		}
	}()

	time.Sleep(5 * time.Second)
	ch.Stop()
	t.Logf("ClickHouse stopped after %d spans", sent.Load())
	time.Sleep(15 * time.Second)
	if !ml.Running() {
		t.Fatalf("meshlens died during the outage:\n%s", ml.Log())
	}
	if ml.metric(t, "meshlens_ingest_retries_total") == 0 {
		t.Errorf("no retries counted during the outage")
	}
	if ml.metric(t, "meshlens_ingest_queued_batches") == 0 {
		t.Errorf("nothing queued during the outage")
	}
	// Restart meshlens mid-outage: the queue on disk must survive it.
	ml.Stop(t)
	ml = startMeshlens(t, args...)
	time.Sleep(15 * time.Second)
	ch.Start()
	t.Logf("ClickHouse restarted after %d spans", sent.Load())
	time.Sleep(5 * time.Second)
	close(stop)
	<-senderDone
	if err := tp.Shutdown(context.Background()); err != nil {
		t.Fatalf("flush the sender: %v", err)
	}
	want := uint64(sent.Load())

	opts, _ := clickhouse.ParseDSN("clickhouse://127.0.0.1:" + ch.port + "/meshlens")
	conn, err := clickhouse.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var spans, records uint64
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		_ = conn.QueryRow(context.Background(), "SELECT count() FROM meshlens.spans").Scan(&spans)
		_ = conn.QueryRow(context.Background(), "SELECT count() FROM meshlens.access_logs").Scan(&records)
		if spans >= want && records >= want {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if spans != want || records != want {
		t.Fatalf("after the outage: %d spans and %d request records in ClickHouse, %d sent", spans, records, want)
	}
	if !ml.Running() {
		t.Fatalf("meshlens died:\n%s", ml.Log())
	}
	t.Logf("all %d spans arrived", want)
}
