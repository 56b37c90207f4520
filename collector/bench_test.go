package collector_test

import (
	"context"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meshlens/meshlens/collector"
	"github.com/meshlens/meshlens/collector/normalize"
	"github.com/meshlens/meshlens/internal/meshtest"
	"github.com/meshlens/meshlens/mesh"
	"github.com/meshlens/meshlens/store"
	"github.com/meshlens/meshlens/store/storetest"
)

// BenchmarkIngest measures OTLP spans/s end to end into ClickHouse (sent over
// gRPC, normalised, paired, queued on disk, written), and in the same run the
// rows/s of a plain clickhouse-go batch insert of the same rows, in batches
// as large as the writer's, and prints their ratio. Target: a ratio ≥ 0.8
// over 2,000,000 spans (MESHLENS_INGEST_SPANS changes the number).
func BenchmarkIngest(b *testing.B) {
	const pairs = 1000 // per OTLP request: 2,000 spans, 1,000 request records
	total := 2_000_000
	if v := os.Getenv("MESHLENS_INGEST_SPANS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 2*pairs {
			b.Fatalf("MESHLENS_INGEST_SPANS=%q: want a number of spans ≥ %d", v, 2*pairs)
		}
		total = n
	}
	batches := total / (2 * pairs)
	data := meshtest.SpanPairs(batches, pairs)
	spans := batches * pairs * 2

	// Reference: the same rows, inserted directly with clickhouse-go.
	ref := storetest.Open(b)
	type chunk struct {
		spans []store.Span
		recs  []mesh.Record
	}
	var chunks []chunk
	p := normalize.NewPairer(time.Minute, 0)
	perInsert := collector.DefaultWriteRows / (3 * pairs) // requests of 3,000 rows each
	for i := 0; i < len(data); i += perInsert {
		var c chunk
		for _, td := range data[i:min(i+perInsert, len(data))] {
			c.spans = append(c.spans, normalize.Spans(td, nil)...)
			c.recs = append(c.recs, p.Add(td, time.Now())...)
		}
		chunks = append(chunks, c)
	}
	var rowsSpans, rowsRecs int
	refStart := time.Now() // only the inserts are timed
	for _, c := range chunks {
		if err := ref.InsertSpans(context.Background(), c.spans); err != nil {
			b.Fatal(err)
		}
		if err := ref.InsertRecords(context.Background(), c.recs); err != nil {
			b.Fatal(err)
		}
		rowsSpans += len(c.spans)
		rowsRecs += len(c.recs)
	}
	refDur := time.Since(refStart)
	refRate := float64(rowsSpans) / refDur.Seconds()
	chunks = nil // the reference's rows are garbage from here on

	// End to end.
	h := startCollectorB(b)
	conn, err := grpc.NewClient(h.cfg.OTLPGRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	// The requests are encoded before the clock starts, as the reference's
	// rows are made before its clock starts: what is timed is OTLP bytes
	// arriving → rows in ClickHouse, not the senders' work (which runs
	// elsewhere in a mesh, and here would share the same two cores).
	reqs := make([][]byte, len(data))
	for i, td := range data {
		if reqs[i], err = ptraceotlp.NewExportRequestFromTraces(td).MarshalProto(); err != nil {
			b.Fatal(err)
		}
	}
	data = nil
	runtime.GC()
	b.ResetTimer()
	if path := os.Getenv("MESHLENS_INGEST_PROFILE"); path != "" {
		// A CPU profile of the end-to-end part alone (the reference and
		// the generated data left out), as README's Performance shows.
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	start := time.Now()
	var wg sync.WaitGroup
	var pushedBack atomic.Int64
	work := make(chan []byte, len(reqs))
	for _, req := range reqs {
		work <- req
	}
	close(work)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for req := range work {
				for {
					var resp []byte
					err := conn.Invoke(context.Background(), "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
						req, &resp, grpc.ForceCodec(encodedCodec{}))
					if err == nil {
						break
					}
					pushedBack.Add(1)
					time.Sleep(10 * time.Millisecond) // pushed back: retry like an SDK
				}
			}
		}()
	}
	wg.Wait()
	accepted := time.Since(start)
	var got uint64
	for got < uint64(spans) {
		if err := h.store.Conn().QueryRow(context.Background(), "SELECT count() FROM "+h.store.Table("spans")).Scan(&got); err != nil {
			b.Fatal(err)
		}
		if time.Since(start) > 5*time.Minute {
			b.Fatalf("only %d of %d spans after 5 minutes", got, spans)
		}
		time.Sleep(20 * time.Millisecond)
	}
	e2e := time.Since(start)
	b.StopTimer()
	e2eRate := float64(spans) / e2e.Seconds()
	b.ReportMetric(e2eRate, "spans/s")
	b.ReportMetric(refRate, "ref-rows/s")
	b.ReportMetric(e2eRate/refRate, "ratio")
	b.Logf("OTLP end to end: %d spans in %v = %.0f spans/s (all accepted after %v, %d requests pushed back and retried); plain clickhouse-go insert of the same %d span rows (+%d records): %v = %.0f rows/s; ratio %.2f (target ≥ 0.8)",
		spans, e2e.Round(time.Millisecond), e2eRate, accepted.Round(time.Millisecond), pushedBack.Load(), rowsSpans, rowsRecs, refDur.Round(time.Millisecond), refRate, e2eRate/refRate)
}

// encodedCodec sends messages that are already protobuf-encoded bytes and
// receives replies as bytes, under the proto codec's name, which is what the
// server expects.
type encodedCodec struct{}

func (encodedCodec) Marshal(v any) ([]byte, error) { return v.([]byte), nil }

func (encodedCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}

func (encodedCodec) Name() string { return "proto" }
