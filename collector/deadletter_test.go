package collector_test

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meshlens/meshlens/collector"
)

func spansNamed(names ...string) ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "poisoner")
	ss := rs.ScopeSpans().AppendEmpty()
	now := time.Now()
	for i, n := range names {
		sp := ss.Spans().AppendEmpty()
		sp.SetName(n)
		sp.SetKind(ptrace.SpanKindInternal)
		sp.SetTraceID(pcommon.TraceID{byte(i + 1), 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15})
		sp.SetSpanID(pcommon.SpanID{byte(i + 1), 1, 2, 3, 4, 5, 6, 7})
		sp.SetStartTimestamp(pcommon.NewTimestampFromTime(now))
		sp.SetEndTimestamp(pcommon.NewTimestampFromTime(now.Add(time.Millisecond)))
	}
	return td
}

func logsWithSeverity(sev ...string) plog.Logs {
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "poisoner")
	sl := rl.ScopeLogs().AppendEmpty()
	for _, s := range sev {
		lr := sl.LogRecords().AppendEmpty()
		lr.SetTimestamp(pcommon.NewTimestampFromTime(time.Now()))
		lr.SetSeverityText(s)
		lr.Body().SetStr("hello " + s)
	}
	return ld
}

func readDeadLetter(t *testing.T, dir string) []collector.DeadLetterEntry {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, collector.DeadLetterFile))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []collector.DeadLetterEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		var e collector.DeadLetterEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("dead-letter line %q: %v", sc.Text(), err)
		}
		out = append(out, e)
	}
	return out
}

// TestRowsClickHouseRefusesAreSetAsideAndTheWriterGoesOn makes ClickHouse
// refuse some rows in both ways it can: the server throws on them (a column
// default that calls throwIf on spans named "poison"), and the client cannot
// encode them (logs.severity turned into an Enum8 without "TRACE"). Good
// requests sent around the bad ones all land, the bad ones are in the
// dead-letter file with the error, counted, and later requests still land.
func TestRowsClickHouseRefusesAreSetAsideAndTheWriterGoesOn(t *testing.T) {
	h := startCollector(t)
	ctx := context.Background()
	for _, q := range []string{
		"ALTER TABLE " + h.store.Table("spans") + " ADD COLUMN guard UInt8 DEFAULT throwIf(name = 'poison')",
		"ALTER TABLE " + h.store.Table("logs") + " MODIFY COLUMN severity Enum8('' = 0, 'INFO' = 1, 'WARN' = 2)",
	} {
		if err := h.store.Conn().Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	conn, err := grpc.NewClient(h.cfg.OTLPGRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	traces, logs := ptraceotlp.NewGRPCClient(conn), plogotlp.NewGRPCClient(conn)
	// Sent back to back, so that the writer takes good and bad requests
	// in one insert.
	for _, names := range [][]string{{"a", "b"}, {"c", "poison", "d"}, {"e"}} {
		if _, err := traces.Export(ctx, ptraceotlp.NewExportRequestFromTraces(spansNamed(names...))); err != nil {
			t.Fatal(err)
		}
	}
	for _, sev := range [][]string{{"INFO"}, {"WARN", "TRACE"}, {"INFO", "INFO"}} {
		if _, err := logs.Export(ctx, plogotlp.NewExportRequestFromLogs(logsWithSeverity(sev...))); err != nil {
			t.Fatal(err)
		}
	}
	waitCount(t, h.store, "SELECT count() FROM "+h.store.Table("spans"), 3)
	waitCount(t, h.store, "SELECT count() FROM "+h.store.Table("logs"), 3)
	waitFor(t, "dead-letter rows", func() bool { return metricValue(t, h.reg, "meshlens_ingest_dead_letter_rows_total") == 5 })

	bySignal := map[string]collector.DeadLetterEntry{}
	for _, e := range readDeadLetter(t, h.dataDir) {
		bySignal[e.Signal] = e
	}
	if e := bySignal["traces"]; e.Table != "spans" || e.Count != 3 || !strings.Contains(e.Error, "throwIf") || !strings.Contains(string(e.Rows), `"poison"`) {
		t.Errorf("dead-letter entry for the spans: %+v", e)
	}
	if e := bySignal["logs"]; e.Table != "logs" || e.Count != 2 || !strings.Contains(e.Error, `unknown element "TRACE"`) || !strings.Contains(string(e.Rows), `"TRACE"`) {
		t.Errorf("dead-letter entry for the logs: %+v", e)
	}

	// The writer goes on.
	if _, err := traces.Export(ctx, ptraceotlp.NewExportRequestFromTraces(spansNamed("f", "g"))); err != nil {
		t.Fatal(err)
	}
	waitCount(t, h.store, "SELECT count() FROM "+h.store.Table("spans"), 5)
	var names []string
	rows, err := h.store.Conn().Query(ctx, "SELECT name FROM "+h.store.Table("spans")+" ORDER BY name")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	if got := strings.Join(names, ","); got != "a,b,e,f,g" {
		t.Errorf("spans in ClickHouse: %s, want a,b,e,f,g", got)
	}
	if n := metricValue(t, h.reg, "meshlens_ingest_dropped_total"); n != 0 {
		t.Errorf("%v rows dropped, want none", n)
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after 30s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
