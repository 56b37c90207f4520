package main

// The fault campaign (issue 14 item 5): meshlens serve as users run it,
// under load, while what it depends on fails. Each test counts what the
// senders were told was accepted and checks that exactly that is in
// ClickHouse, once; the numbers are printed with t.Logf.

import (
	"bufio"
	"context"
	binenc "encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	datav3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshlens/meshlens/internal/meshtest"
	"github.com/meshlens/meshlens/store/storetest"
)

// acked is what the senders were told: keys acknowledged, and all keys
// sent (acknowledged or not).
type acked struct {
	mu   sync.Mutex
	ok   map[string]bool
	sent map[string]bool
	errs map[string]int // refusals by gRPC code
}

func newAcked() *acked {
	return &acked{ok: map[string]bool{}, sent: map[string]bool{}, errs: map[string]int{}}
}

func (a *acked) add(keys []string, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, k := range keys {
		a.sent[k] = true
		if err == nil {
			a.ok[k] = true
		}
	}
	if err != nil {
		a.errs[status.Code(err).String()]++
	}
}

func (a *acked) counts() (ok, sent int, errs string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.ok), len(a.sent), fmt.Sprint(a.errs)
}

// sender calls send one call after another until stopped, never retrying:
// the keys a call returns are acknowledged when it returned OK.
type sender struct {
	*acked
	stop chan struct{}
	done chan struct{}
}

// startSender dials addr and runs send with the connection until Stop,
// pausing after each call (100 ms after a failed one).
func startSender(t *testing.T, addr string, pause time.Duration, send func(conn *grpc.ClientConn) ([]string, error)) *sender {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	s := &sender{acked: newAcked(), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		defer conn.Close()
		for {
			select {
			case <-s.stop:
				return
			default:
			}
			keys, err := send(conn)
			s.add(keys, err)
			if err != nil {
				time.Sleep(100 * time.Millisecond)
			} else if pause > 0 {
				time.Sleep(pause)
			}
		}
	}()
	t.Cleanup(s.Stop)
	return s
}

// Stop stops sending; the call in flight finishes first.
func (s *sender) Stop() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
}

// startOTLPSender exports server spans over OTLP/gRPC, spansPerCall per
// call: a span is acknowledged when its call returned OK. Span ids are hex
// of a counter.
func startOTLPSender(t *testing.T, addr string, spansPerCall int, pause time.Duration) *sender {
	t.Helper()
	var seq uint64 = rand.Uint64() >> 16 // ids of their own per test
	return startSender(t, addr, pause, func(conn *grpc.ClientConn) ([]string, error) {
		td, keys := faultSpans(&seq, spansPerCall)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := ptraceotlp.NewGRPCClient(conn).Export(ctx, ptraceotlp.NewExportRequestFromTraces(td))
		return keys, err
	})
}

// faultSpans is n server spans of the service "faults", each its own
// trace; keys are their span ids as ClickHouse stores them.
func faultSpans(seq *uint64, n int) (ptrace.Traces, []string) {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "faults")
	rs.Resource().Attributes().PutStr("k8s.namespace.name", "faults")
	ss := rs.ScopeSpans().AppendEmpty().Spans()
	now := time.Now()
	keys := make([]string, 0, n)
	for range n {
		*seq++
		var sid pcommon.SpanID
		binenc.BigEndian.PutUint64(sid[:], *seq)
		var tid pcommon.TraceID
		binenc.BigEndian.PutUint64(tid[8:], *seq)
		tid[0] = 0xfa
		sp := ss.AppendEmpty()
		sp.SetKind(ptrace.SpanKindServer)
		sp.SetName("GET /faults")
		sp.SetTraceID(tid)
		sp.SetSpanID(sid)
		sp.SetStartTimestamp(pcommon.NewTimestampFromTime(now.Add(-time.Millisecond)))
		sp.SetEndTimestamp(pcommon.NewTimestampFromTime(now))
		sp.Attributes().PutInt("http.response.status_code", 200)
		keys = append(keys, hex.EncodeToString(sid[:]))
	}
	return td, keys
}

// startALSSender sends Envoy access logs over ALS in short streams of msgs
// messages of perMsg entries; the entries of a stream are acknowledged
// when the stream closes with OK. An entry's key is its request path.
func startALSSender(t *testing.T, addr string, msgs, perMsg int, pause time.Duration) *sender {
	t.Helper()
	prefix := fmt.Sprintf("/fault-als/%x/", rand.Uint32())
	var seq int
	return startSender(t, addr, pause, func(conn *grpc.ClientConn) ([]string, error) {
		var keys []string
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		stream, err := alsv3.NewAccessLogServiceClient(conn).StreamAccessLogs(ctx)
		if err != nil {
			return nil, err
		}
		for m := range msgs {
			msg := &alsv3.StreamAccessLogsMessage{}
			if m == 0 {
				msg.Identifier = &alsv3.StreamAccessLogsMessage_Identifier{Node: faultNode(), LogName: "faults"}
			}
			var entries []*datav3.HTTPAccessLogEntry
			for range perMsg {
				seq++
				path := prefix + fmt.Sprint(seq)
				keys = append(keys, path)
				entries = append(entries, alsEntry(path))
			}
			msg.LogEntries = &alsv3.StreamAccessLogsMessage_HttpLogs{HttpLogs: &alsv3.StreamAccessLogsMessage_HTTPAccessLogEntries{LogEntry: entries}}
			if err := stream.Send(msg); err != nil {
				break // CloseAndRecv says why
			}
		}
		_, err = stream.CloseAndRecv()
		return keys, err
	})
}

func faultNode() *corev3.Node {
	md, _ := structpb.NewStruct(map[string]any{"NAMESPACE": "faults", "NAME": "caller-v1-abc", "WORKLOAD_NAME": "caller-v1",
		"LABELS": map[string]any{"app": "caller", "version": "v1"}})
	return &corev3.Node{Id: "sidecar~10.0.0.7~caller.faults~faults.svc.cluster.local", Cluster: "caller.faults", Metadata: md}
}

func alsEntry(path string) *datav3.HTTPAccessLogEntry {
	return &datav3.HTTPAccessLogEntry{
		CommonProperties: &datav3.AccessLogCommon{StartTime: timestamppb.Now(),
			UpstreamCluster: "outbound|9080|v1|callee.faults.svc.cluster.local", Duration: durationpb.New(3 * time.Millisecond)},
		ProtocolVersion: datav3.HTTPAccessLogEntry_HTTP11,
		Request:         &datav3.HTTPRequestProperties{RequestMethod: corev3.RequestMethod_GET, Path: path, Authority: "callee:9080"},
		Response:        &datav3.HTTPResponseProperties{ResponseCode: wrapperspb.UInt32(200)},
	}
}

// chCount runs a query of (key, count) rows on ClickHouse at addr.
func chCount(t *testing.T, addr, query string) map[string]uint64 {
	t.Helper()
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rows, err := conn.Query(ctx, query)
	if err != nil {
		t.Logf("%s: %v", query, err)
		return nil
	}
	defer rows.Close()
	out := map[string]uint64{}
	for rows.Next() {
		var k string
		var n uint64
		if err := rows.Scan(&k, &n); err != nil {
			t.Fatal(err)
		}
		out[k] = n
	}
	return out
}

// exactlyOnce waits until every acknowledged key is in ClickHouse, then
// checks each is there once and nothing is there that was not sent, or
// twice. Keys sent but not acknowledged (the call failed) may be there
// once: meshlens may have queued them before the failure.
func exactlyOnce(t *testing.T, what string, a *acked, stored func() map[string]uint64, timeout time.Duration) {
	t.Helper()
	ok, sent, errs := a.counts()
	var got map[string]uint64
	deadline := time.Now().Add(timeout)
	for {
		got = stored()
		missing := 0
		for k := range a.ok {
			if got[k] == 0 {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: %d of %d acknowledged are not in ClickHouse after %v", what, missing, ok, timeout)
			break
		}
		time.Sleep(time.Second)
	}
	var twice, unknown, unackedStored int
	for k, n := range got {
		switch {
		case !a.sent[k]:
			unknown++
		case n > 1:
			twice++
		case !a.ok[k]:
			unackedStored++
		}
	}
	if twice > 0 || unknown > 0 {
		t.Errorf("%s: %d stored more than once, %d stored that were never sent", what, twice, unknown)
	}
	t.Logf("%s: %d sent, %d acknowledged, %d in ClickHouse (each once; %d of them sent in calls that failed); refusals by code: %s",
		what, sent, ok, len(got), unackedStored, errs)
}

// sharedCH is a fresh database on the shared test ClickHouse (dropped
// when the test ends): its native address and name.
func sharedCH(t *testing.T) (addr, db string) {
	t.Helper()
	dsn := storetest.DSN(t)
	opts, err := clickhouse.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return opts.Addr[0], opts.Auth.Database
}

// stillRunning fails the test if meshlens has exited.
func stillRunning(t *testing.T, ml *meshlensProcess, when string) {
	t.Helper()
	if !ml.Running() {
		t.Fatalf("meshlens died %s:\n%s", when, ml.Log())
	}
}

// mountTmpfs mounts a tmpfs of mib MiB on a directory of the test's own,
// unmounted when the test ends (after meshlens stops), or skips the test
// when it may not mount one.
func mountTmpfs(t *testing.T, mib int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the disk-full test mounts a tmpfs as the data dir: it runs as root only")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%dm", mib), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("the disk-full test cannot mount a tmpfs (%v: %s)", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Logf("umount %s: %v %s", dir, err, out)
		}
	})
	return dir
}

// withFiller gives every span of td an 8 KiB attribute of its own (the
// queue stores a string repeated in one batch once).
func withFiller(td ptrace.Traces) ptrace.Traces {
	filler := strings.Repeat("x", 8192)
	for _, rs := range td.ResourceSpans().All() {
		for _, ss := range rs.ScopeSpans().All() {
			for _, sp := range ss.Spans().All() {
				sp.Attributes().PutStr("filler", sp.SpanID().String()+filler)
			}
		}
	}
	return td
}

// TestDataDirDiskFullRefusesTelemetryAndLosesNothing runs meshlens on a
// 48 MiB tmpfs with ClickHouse unreachable (a proxy the test cuts), so the
// ingest queue fills the disk: OTLP exports are then refused with
// Unavailable (retryable) naming the full disk, meshlens_ingest_disk_full
// is 1 and /readyz says so; once ClickHouse is back the queue drains, the
// disk has room, exports are accepted again, and every span acknowledged
// before and after is in ClickHouse once.
func TestDataDirDiskFullRefusesTelemetryAndLosesNothing(t *testing.T) {
	dataDir := mountTmpfs(t, 48)
	addr, db := sharedCH(t)
	proxy := meshtest.StartFaultProxy(t, addr)
	otlp := freeAddr(t)
	ml := startMeshlens(t, "--clickhouse", "clickhouse://"+proxy.Addr()+"/"+db, "--data-dir", dataDir, "--otlp-grpc", otlp,
		"--queue-max-bytes", "1073741824", "--clickhouse-wait", "2s")
	proxy.SetDown(true)

	conn, err := grpc.NewClient(otlp, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := ptraceotlp.NewGRPCClient(conn)
	a := newAcked()
	seq := rand.Uint64() >> 16
	export := func() error {
		td, keys := faultSpans(&seq, 16)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := client.Export(ctx, ptraceotlp.NewExportRequestFromTraces(withFiller(td)))
		a.add(keys, err)
		return err
	}
	start := time.Now()
	var refusal error
	for i := 0; refusal == nil; i++ {
		refusal = export()
		if i > 2000 {
			t.Fatal("48 MiB never filled up")
		}
	}
	ok, sent, _ := a.counts()
	t.Logf("disk full after %v: %d spans acknowledged of %d sent; refusal: %v", time.Since(start).Round(time.Millisecond), ok, sent, refusal)
	if status.Code(refusal) != codes.Unavailable || !strings.Contains(refusal.Error(), "the data dir's disk is full") {
		t.Errorf("refusal on a full disk: %v, want Unavailable naming the full disk", refusal)
	}
	for range 5 {
		if err := export(); status.Code(err) != codes.Unavailable {
			t.Errorf("export on a full disk: %v, want Unavailable", err)
		}
	}
	if n := ml.metric(t, "meshlens_ingest_disk_full"); n != 1 {
		t.Errorf("meshlens_ingest_disk_full = %v on a full disk, want 1", n)
	}
	if n := ml.metric(t, `meshlens_ingest_refused_total{signal="traces"}`); n < 16*6 {
		t.Errorf("meshlens_ingest_refused_total{traces} = %v, want at least the %d spans refused", n, 16*6)
	}
	if code, body := get(t, ml, "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "disk is full") {
		t.Errorf("/readyz on a full disk: %d %q, want 503 naming the disk", code, body)
	}
	stillRunning(t, ml, "with its disk full")

	proxy.SetDown(false)
	back := time.Now()
	waitFor(t, "the queue written and room on the disk again", 2*time.Minute, func() bool {
		return ml.metric(t, "meshlens_ingest_queued_batches") == 0 && ml.metric(t, "meshlens_ingest_disk_full") == 0
	})
	t.Logf("queue written and room again %v after ClickHouse came back", time.Since(back).Round(time.Millisecond))
	for i := range 20 {
		if err := export(); err != nil {
			t.Fatalf("export %d with room again: %v", i, err)
		}
	}
	exactlyOnce(t, "spans across the full disk", a, func() map[string]uint64 {
		return chCount(t, addr, "SELECT span_id, count() FROM "+db+".spans GROUP BY span_id")
	}, 2*time.Minute)
	if code, _ := get(t, ml, "/readyz"); code != http.StatusOK {
		t.Errorf("/readyz with room again: %d", code)
	}
}

// TestSlowClickHouseSlowsIngestQueuesAndLosesNothing puts a proxy that
// holds every chunk ClickHouse answers for 300 ms between meshlens and
// ClickHouse under OTLP and ALS load: inserts take seconds, the queue
// grows instead of senders being refused, and all that was acknowledged
// is written, once.
func TestSlowClickHouseSlowsIngestQueuesAndLosesNothing(t *testing.T) {
	t.Parallel() // with the ClickHouse outage test: both mostly wait
	addr, db := sharedCH(t)
	proxy := meshtest.StartFaultProxy(t, addr)
	otlp, als := freeAddr(t), freeAddr(t)
	ml := startMeshlens(t, "--clickhouse", "clickhouse://"+proxy.Addr()+"/"+db, "--data-dir", t.TempDir(), "--otlp-grpc", otlp, "--als", als)
	proxy.SetDelay(300 * time.Millisecond)

	spans := startOTLPSender(t, otlp, 50, 10*time.Millisecond)
	logs := startALSSender(t, als, 5, 20, 10*time.Millisecond)
	var maxQueued float64
	for range 20 {
		time.Sleep(500 * time.Millisecond)
		maxQueued = max(maxQueued, ml.metric(t, "meshlens_ingest_queued_batches"))
	}
	spans.Stop()
	logs.Stop()
	stopped := time.Now()
	if maxQueued == 0 {
		t.Errorf("nothing queued while ClickHouse answered slowly")
	}
	for _, s := range []*acked{spans.acked, logs.acked} {
		if ok, sent, errs := s.counts(); ok != sent {
			t.Errorf("%d of %d refused while ClickHouse was slow (%s): the queue should take them", sent-ok, sent, errs)
		}
	}
	t.Logf("up to %.0f batches queued while ClickHouse answered each chunk 300 ms late", maxQueued)
	exactlyOnce(t, "OTLP spans", spans.acked, func() map[string]uint64 {
		return chCount(t, addr, "SELECT span_id, count() FROM "+db+".spans GROUP BY span_id")
	}, 3*time.Minute)
	exactlyOnce(t, "ALS access-log entries", logs.acked, func() map[string]uint64 {
		return chCount(t, addr, "SELECT path, count() FROM "+db+".access_logs WHERE path LIKE '/fault-als/%' GROUP BY path")
	}, 3*time.Minute)
	t.Logf("the backlog was written %v after the senders stopped", time.Since(stopped).Round(time.Millisecond))
	stillRunning(t, ml, "with ClickHouse slow")
}

// TestSendersThatDisconnectMidStreamLeakNothing has OTLP and ALS senders
// vanish half-way, 100 times each way: ALS streams cancelled after a
// message and connections dropped under an open stream, OTLP/gRPC calls
// cancelled in flight, OTLP/HTTP requests whose body stops half-way.
// meshlens keeps running, its goroutines, open streams and files come back
// to where they were, and what was acknowledged in between is stored once.
func TestSendersThatDisconnectMidStreamLeakNothing(t *testing.T) {
	addr, db := sharedCH(t)
	otlpG, otlpH, als := freeAddr(t), freeAddr(t), freeAddr(t)
	ml := startMeshlens(t, "--clickhouse", "clickhouse://"+addr+"/"+db, "--data-dir", t.TempDir(),
		"--otlp-grpc", otlpG, "--otlp-http", otlpH, "--als", als, "--http-read-timeout", "2s")
	spans, logs := newAcked(), newAcked()
	seq := rand.Uint64() >> 16
	alsSeq := 0
	prefix := fmt.Sprintf("/fault-als/%x/", rand.Uint32())
	alsMsg := func(first bool, n int) (*alsv3.StreamAccessLogsMessage, []string) {
		msg := &alsv3.StreamAccessLogsMessage{}
		if first {
			msg.Identifier = &alsv3.StreamAccessLogsMessage_Identifier{Node: faultNode(), LogName: "faults"}
		}
		var entries []*datav3.HTTPAccessLogEntry
		var keys []string
		for range n {
			alsSeq++
			keys = append(keys, prefix+fmt.Sprint(alsSeq))
			entries = append(entries, alsEntry(keys[len(keys)-1]))
		}
		msg.LogEntries = &alsv3.StreamAccessLogsMessage_HttpLogs{HttpLogs: &alsv3.StreamAccessLogsMessage_HTTPAccessLogEntries{LogEntry: entries}}
		return msg, keys
	}
	dial := func(a string) *grpc.ClientConn {
		c, err := grpc.NewClient(a, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	good := func() {
		c := dial(als)
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		stream, err := alsv3.NewAccessLogServiceClient(c).StreamAccessLogs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		msg, keys := alsMsg(true, 10)
		_ = stream.Send(msg)
		_, err = stream.CloseAndRecv()
		logs.add(keys, err)
		g := dial(otlpG)
		defer g.Close()
		td, skeys := faultSpans(&seq, 10)
		_, err = ptraceotlp.NewGRPCClient(g).Export(ctx, ptraceotlp.NewExportRequestFromTraces(td))
		spans.add(skeys, err)
	}
	good()
	waitFor(t, "the first rows written", time.Minute, func() bool { return written(t, ml) > 0 })
	time.Sleep(time.Second)
	goroutines, fds := ml.metric(t, "go_goroutines"), ml.metric(t, "process_open_fds")

	start := time.Now()
	var wg sync.WaitGroup
	for i := range 100 {
		// An ALS stream cancelled after one message, on a shared connection.
		c := dial(als)
		ctx, cancel := context.WithCancel(context.Background())
		if stream, err := alsv3.NewAccessLogServiceClient(c).StreamAccessLogs(ctx); err == nil {
			msg, keys := alsMsg(true, 5)
			_ = stream.Send(msg)
			logs.add(keys, fmt.Errorf("cancelled by the sender"))
		}
		time.Sleep(5 * time.Millisecond)
		cancel()
		// An ALS stream whose connection drops under it.
		c2 := dial(als)
		if stream, err := alsv3.NewAccessLogServiceClient(c2).StreamAccessLogs(context.Background()); err == nil {
			msg, keys := alsMsg(true, 5)
			_ = stream.Send(msg)
			logs.add(keys, fmt.Errorf("connection dropped by the sender"))
		}
		time.Sleep(5 * time.Millisecond)
		c2.Close()
		c.Close()
		// An OTLP/gRPC export cancelled in flight.
		g := dial(otlpG)
		td, keys := faultSpans(&seq, 20)
		gctx, gcancel := context.WithTimeout(context.Background(), time.Duration(1+i%5)*time.Millisecond)
		_, err := ptraceotlp.NewGRPCClient(g).Export(gctx, ptraceotlp.NewExportRequestFromTraces(td))
		gcancel()
		spans.add(keys, err)
		g.Close()
		// An OTLP/HTTP body that stops half-way, then the connection goes.
		wg.Add(1)
		go func() {
			defer wg.Done()
			td, keys := faultSpans(&seq, 20)
			body, _ := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
			spans.add(keys, fmt.Errorf("body cut by the sender"))
			hc, err := net.Dial("tcp", otlpH)
			if err != nil {
				return
			}
			defer hc.Close()
			fmt.Fprintf(hc, "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: %d\r\n\r\n", len(body))
			_, _ = hc.Write(body[:len(body)/2])
			time.Sleep(time.Duration(i%3) * time.Second)
		}()
		if i%10 == 0 {
			good()
		}
	}
	wg.Wait()
	good()
	t.Logf("100 rounds of senders vanishing in %v", time.Since(start).Round(time.Millisecond))
	stillRunning(t, ml, "after senders vanished")
	var g2, f2 float64
	waitFor(t, "goroutines, streams and files back to where they were", 30*time.Second, func() bool {
		g2, f2 = ml.metric(t, "go_goroutines"), ml.metric(t, "process_open_fds")
		return g2 <= goroutines+20 && f2 <= fds+10 &&
			ml.metric(t, `meshlens_grpc_streams{listener="als"}`) == 0 && ml.metric(t, `meshlens_grpc_streams{listener="otlp_grpc"}`) == 0
	})
	t.Logf("goroutines %.0f before, %.0f after; open files %.0f before, %.0f after", goroutines, g2, fds, f2)
	exactlyOnce(t, "OTLP spans", spans, func() map[string]uint64 {
		return chCount(t, addr, "SELECT span_id, count() FROM "+db+".spans GROUP BY span_id")
	}, 2*time.Minute)
	exactlyOnce(t, "ALS access-log entries", logs, func() map[string]uint64 {
		return chCount(t, addr, "SELECT path, count() FROM "+db+".access_logs WHERE path LIKE '/fault-als/%' GROUP BY path")
	}, 2*time.Minute)
}

// TestTenThousandIdleHTTPConnectionsAreServedAroundAndClosed opens 10,000
// HTTP/1.1 connections to the API, one request each, and leaves them idle:
// meshlens keeps answering API requests on new connections meanwhile, and
// closes every idle one after --http-idle-timeout (10 s here), not before.
func TestTenThousandIdleHTTPConnectionsAreServedAroundAndClosed(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 10,000 connections")
	}
	const conns = 10_000
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	if rl.Cur < conns+2000 && rl.Max > rl.Cur {
		// meshlens, started after this, inherits the limit.
		rl.Cur = min(rl.Max, conns+4000)
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
		_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
	}
	if rl.Cur < conns+1000 {
		t.Skipf("10,000 connections need more open files than ulimit -n allows here (%d, hard %d)", rl.Cur, rl.Max)
	}
	idle := 10 * time.Second
	ml := startMeshlens(t, "--clickhouse", "clickhouse://127.0.0.1:1/none", "--clickhouse-wait", "0s", "--data-dir", t.TempDir(),
		"--http-idle-timeout", idle.String())

	opened := make([]net.Conn, conns)
	answeredAt := make([]time.Time, conns)
	// sentAt is when each request went out: meshlens' idle wait starts
	// after it answers, so later; the time the answer was read (answeredAt)
	// can come well after that on a loaded machine, so an idle close can
	// rightly come sooner than the idle timeout after answeredAt.
	sentAt := make([]time.Time, conns)
	start := time.Now()
	var wg sync.WaitGroup
	var failed atomic.Int64
	for w := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < conns; i += 50 {
				c, err := net.DialTimeout("tcp", ml.http, 10*time.Second)
				if err != nil {
					failed.Add(1)
					continue
				}
				_ = c.SetDeadline(time.Now().Add(30 * time.Second))
				br := bufio.NewReader(c)
				sentAt[i] = time.Now()
				fmt.Fprint(c, "GET /healthz HTTP/1.1\r\nHost: meshlens\r\n\r\n")
				resp, err := http.ReadResponse(br, nil)
				if err != nil || resp.StatusCode != http.StatusOK {
					failed.Add(1)
					c.Close()
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				answeredAt[i] = time.Now()
				opened[i] = c
			}
		}()
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d connections could not be opened and served", n, conns)
	}
	t.Logf("%d connections opened and served one request each in %v", conns, time.Since(start).Round(time.Millisecond))

	// The API answers on new connections while they sit idle.
	var slowest time.Duration
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for _, path := range []string{"/healthz", "/readyz", "/api/v1/graph", "/api/v1/rollouts", "/metrics"} {
		t0 := time.Now()
		resp, err := client.Get("http://" + ml.http + path)
		if err != nil {
			t.Fatalf("GET %s with %d idle connections: %v", path, conns, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s with %d idle connections: %d", path, conns, resp.StatusCode)
		}
		slowest = max(slowest, time.Since(t0))
	}
	if fds := ml.metric(t, "process_open_fds"); fds < conns {
		t.Errorf("meshlens holds %v files with %d connections open to it", fds, conns)
	}
	t.Logf("API requests answered in at most %v with %d idle connections", slowest.Round(time.Millisecond), conns)

	// Every idle connection is closed by meshlens after the idle timeout.
	var early, late atomic.Int64
	var lastClose atomic.Int64
	for w := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1)
			for i := w; i < conns; i += 50 {
				c := opened[i]
				_ = c.SetReadDeadline(answeredAt[i].Add(idle + 30*time.Second))
				_, err := c.Read(buf)
				at := time.Now()
				c.Close()
				if err != io.EOF {
					late.Add(1)
					continue
				}
				if at.Sub(sentAt[i]) < idle-time.Second {
					early.Add(1)
				}
				for {
					old := lastClose.Load()
					if at.UnixNano() <= old || lastClose.CompareAndSwap(old, at.UnixNano()) {
						break
					}
				}
			}
		}()
	}
	wg.Wait()
	if n := late.Load(); n > 0 {
		t.Errorf("%d of %d idle connections not closed by meshlens within %v of their request", n, conns, idle+30*time.Second)
	}
	if n := early.Load(); n > 0 {
		t.Errorf("%d idle connections closed before the idle timeout of %v", n, idle)
	}
	t.Logf("all idle connections closed; the last %v after the first was served", time.Unix(0, lastClose.Load()).Sub(start).Round(time.Millisecond))
	stillRunning(t, ml, "after 10,000 idle connections")
	if code, _ := get(t, ml, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz after the idle connections: %d", code)
	}
}
