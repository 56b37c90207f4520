package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/meshlens/meshlens/internal/chcluster"
)

// TestClickHouseClusterFaultsLoseNothing runs meshlens serve on a ClickHouse
// cluster of its own (2 shards × 2 replicas, ZooKeeper) under steady OTLP
// load, and breaks it three ways in turn: the replica meshlens is connected
// to is killed (ingest and reads go on through the other replica), a whole
// shard is killed (ingest waits on disk, and /readyz, metrics and the log say
// so), ZooKeeper is killed (replicated tables refuse writes; the same). After
// each, the cluster is restored and meshlens catches up; at the end every
// span sent is stored exactly once, and both replicas of each shard hold the
// same rows.
func TestClickHouseClusterFaultsLoseNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a cluster of four ClickHouse servers and ZooKeeper")
	}
	ctx := context.Background()
	c, err := chcluster.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	nodes := c.Nodes()
	if len(nodes) != 4 {
		t.Fatalf("cluster nodes %v, want 2 shards x 2 replicas", nodes)
	}
	otlp := freeAddr(t)
	ml := startMeshlens(t, "--clickhouse", c.DSN("meshlens"), "--clickhouse-cluster", c.Name, "--data-dir", t.TempDir(),
		"--otlp-grpc", otlp, "--otlp-http", "", "--als", "", "--clickhouse-wait", "60s")
	load := startSpanLoad(t, otlp)
	waitFor(t, "the first spans written", 30*time.Second, func() bool { return written(t, ml) > 0 })

	restore := func(t *testing.T) {
		t.Helper()
		rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		if err := c.Restore(rctx); err != nil {
			t.Fatal(err)
		}
	}
	// caughtUp waits until everything received so far is written and
	// /readyz has no warning.
	caughtUp := func(t *testing.T) {
		t.Helper()
		received := ml.metric(t, `meshlens_ingest_received_total{signal="traces"}`)
		start := time.Now()
		waitFor(t, "ingest to catch up", 90*time.Second, func() bool {
			return ml.metric(t, `meshlens_ingest_written_total{signal="traces"}`) >= received && readyz(t, ml) == "ready"
		})
		t.Logf("caught up %v after the restore", time.Since(start).Round(100*time.Millisecond))
	}

	t.Run("the replica meshlens uses is killed: ingest and reads go on", func(t *testing.T) {
		first := nodes[0] // first in the DSN: every connection of meshlens
		if err := c.Kill(first.Process()); err != nil {
			t.Fatal(err)
		}
		t.Logf("killed %s after %d spans", first, load.sent.Load())
		before := written(t, ml)
		for end := time.Now().Add(6 * time.Second); time.Now().Before(end); time.Sleep(300 * time.Millisecond) {
			for _, path := range []string{"/api/v1/logs?service=steady&limit=5", "/api/v1/traces?service=steady&limit=5"} {
				if code, body := get(t, ml, path); code != http.StatusOK {
					t.Errorf("GET %s with %s down = %d %s", path, first, code, body)
				}
			}
		}
		if after := written(t, ml); after <= before {
			t.Errorf("nothing written in the 6 s %s was down (%v then %v)", first, before, after)
		}
		restore(t)
		caughtUp(t)
	})

	// faultQueues kills processes, checks meshlens queues and says why, then
	// restores them and waits for the queue to drain.
	faultQueues := func(t *testing.T, processes []string, why ...string) {
		retries := ml.metric(t, "meshlens_ingest_retries_total")
		for _, p := range processes {
			if err := c.Kill(p); err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("killed %v after %d spans", processes, load.sent.Load())
		waitFor(t, "/readyz to say writes fail", 30*time.Second, func() bool {
			return strings.Contains(readyz(t, ml), "clickhouse writes failing")
		})
		if ready := readyz(t, ml); !strings.Contains(ready, "queued on disk") {
			t.Errorf("/readyz = %q, want it to say telemetry is queued on disk", ready)
		}
		time.Sleep(3 * time.Second) // load keeps arriving meanwhile
		// Queued batches and a retry, within 30 s more: a retry's backoff on
		// a loaded machine can outlast the 3 s above.
		queuedAndRetried := false
		for end := time.Now().Add(30 * time.Second); !queuedAndRetried && time.Now().Before(end); time.Sleep(300 * time.Millisecond) {
			queuedAndRetried = ml.metric(t, "meshlens_ingest_queued_batches") > 0 && ml.metric(t, "meshlens_ingest_retries_total") > retries
		}
		if !queuedAndRetried {
			t.Errorf("nothing queued or no retries counted while %v were down", processes)
		}
		log := ml.Log()
		if !strings.Contains(log, "data stays queued on disk") {
			t.Errorf("the log does not say data is queued on disk")
		}
		for _, w := range why {
			if !strings.Contains(log, w) {
				t.Errorf("the log does not say why writes fail: no %q", w)
			}
		}
		restore(t)
		caughtUp(t)
		if !strings.Contains(ml.Log(), "clickhouse write recovered") {
			t.Errorf("the log does not say writes recovered")
		}
	}
	t.Run("a whole shard is down: ingest waits on disk and catches up", func(t *testing.T) {
		faultQueues(t, []string{nodes[2].Process(), nodes[3].Process()}, "All connection tries failed", "Connection refused ("+nodes[2].Addr+")")
	})
	t.Run("ZooKeeper is down: replicated tables refuse writes; ingest waits on disk and catches up", func(t *testing.T) {
		faultQueues(t, []string{"zookeeper"}, "Table is in readonly mode")
	})

	want := uint64(load.Stop(t))
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{nodes[0].Addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var spans, records, rolled uint64
	for deadline := time.Now().Add(90 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		_ = conn.QueryRow(ctx, "SELECT count() FROM meshlens.spans").Scan(&spans)
		_ = conn.QueryRow(ctx, "SELECT count() FROM meshlens.access_logs").Scan(&records)
		_ = conn.QueryRow(ctx, "SELECT countMerge(requests) FROM meshlens.edges_1m").Scan(&rolled)
		if spans >= want && records >= want && rolled >= want {
			break
		}
	}
	if spans != want || records != want || rolled != want {
		t.Fatalf("%d spans sent; stored %d spans, %d request records, %d in the rollup", want, spans, records, rolled)
	}
	// Every replica has the same rows as the other of its shard.
	for _, table := range []string{"spans_local", "access_logs_local", "edges_1m_local"} {
		var counts map[chcluster.Node]uint64
		agree := func() bool {
			if counts, err = c.Counts(ctx, "meshlens."+table); err != nil {
				return false
			}
			return counts[nodes[0]] == counts[nodes[1]] && counts[nodes[2]] == counts[nodes[3]]
		}
		waitFor(t, "the replicas of "+table+" to agree", 60*time.Second, agree)
		t.Logf("%s rows: %v", table, counts)
		if table != "edges_1m_local" && counts[nodes[0]]+counts[nodes[2]] != want {
			t.Errorf("%s: the shards hold %d + %d rows, want %d", table, counts[nodes[0]], counts[nodes[2]], want)
		}
	}
	if !ml.Running() {
		t.Fatalf("meshlens died:\n%s", ml.Log())
	}
	t.Logf("all %d spans stored once, on both replicas of their shard", want)
}

// written is how many rows of request records meshlens has written.
func written(t *testing.T, ml *meshlensProcess) float64 {
	return ml.metric(t, `meshlens_ingest_written_total{signal="records"}`)
}

// readyz returns /readyz's answer without its trailing newline.
func readyz(t *testing.T, ml *meshlensProcess) string {
	_, body := get(t, ml, "/readyz")
	return strings.TrimSpace(body)
}

func get(t *testing.T, ml *meshlensProcess, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + ml.http + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK && strings.HasPrefix(path, "/api/") && !json.Valid(body) {
		return 0, "invalid JSON: " + string(body)
	}
	return resp.StatusCode, string(body)
}

func waitFor(t *testing.T, what string, timeout time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", timeout, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// spanLoad sends server spans of the service "steady" over OTLP/gRPC, about
// 400 a second, until stopped; the exporter retries, so it rides out
// restarts of meshlens.
type spanLoad struct {
	sent atomic.Int64
	tp   *sdktrace.TracerProvider
	stop chan struct{}
	done chan struct{}
}

func startSpanLoad(t *testing.T, otlp string) *spanLoad {
	t.Helper()
	exp, err := otlptracegrpc.New(context.Background(), otlptracegrpc.WithEndpoint(otlp), otlptracegrpc.WithInsecure(),
		otlptracegrpc.WithTimeout(time.Minute),
		otlptracegrpc.WithRetry(otlptracegrpc.RetryConfig{Enabled: true, InitialInterval: 100 * time.Millisecond, MaxInterval: time.Second, MaxElapsedTime: 2 * time.Minute}))
	if err != nil {
		t.Fatal(err)
	}
	l := &spanLoad{stop: make(chan struct{}), done: make(chan struct{})}
	l.tp = sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(100*time.Millisecond), sdktrace.WithMaxQueueSize(100_000)),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", "steady"))))
	tracer := l.tp.Tracer("steady")
	go func() {
		defer close(l.done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-tick.C:
				for i := 0; i < 4; i++ {
					_, sp := tracer.Start(context.Background(), "GET /", trace.WithSpanKind(trace.SpanKindServer))
					sp.End()
					l.sent.Add(1)
				}
			}
		}
	}()
	t.Cleanup(func() {
		select {
		case <-l.done:
		default:
			close(l.stop)
			<-l.done
		}
	})
	return l
}

// Stop stops sending, flushes what the SDK holds, and returns how many spans
// were sent.
func (l *spanLoad) Stop(t *testing.T) int64 {
	t.Helper()
	close(l.stop)
	<-l.done
	if err := l.tp.Shutdown(context.Background()); err != nil {
		t.Fatalf("flush the sender: %v", err)
	}
	return l.sent.Load()
}
