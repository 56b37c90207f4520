package normalize

import (
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/meshlens/meshlens/collector/accesslog"
	"github.com/meshlens/meshlens/mesh"
)

// span appends one span of kind k for service/version to td.
func span(td ptrace.Traces, service, version string, k ptrace.SpanKind, trace, id, parent byte, start time.Time, d time.Duration) ptrace.Span {
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", service)
	if version != "" {
		rs.Resource().Attributes().PutStr("service.version", version)
	}
	sp := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	sp.SetKind(k)
	sp.SetTraceID(pcommon.TraceID{trace})
	sp.SetSpanID(pcommon.SpanID{id})
	if parent != 0 {
		sp.SetParentSpanID(pcommon.SpanID{parent})
	}
	sp.SetStartTimestamp(pcommon.NewTimestampFromTime(start))
	sp.SetEndTimestamp(pcommon.NewTimestampFromTime(start.Add(d)))
	return sp
}

func TestPairerJoinsHalvesInEitherOrder(t *testing.T) {
	now := time.Unix(1000, 0)
	p := NewPairer(time.Second, 100)

	// Server half first, then its client half.
	server := ptrace.NewTraces()
	span(server, "b", "v2", ptrace.SpanKindServer, 1, 2, 1, now, 8*time.Millisecond).Attributes().PutInt("http.response.status_code", 503)
	if got := p.Add(server, now); len(got) != 0 {
		t.Fatalf("server half alone produced %d records", len(got))
	}
	client := ptrace.NewTraces()
	span(client, "a", "v1", ptrace.SpanKindClient, 1, 1, 0, now, 10*time.Millisecond)
	got := p.Add(client, now)
	if len(got) != 1 {
		t.Fatalf("pair produced %d records", len(got))
	}
	r := got[0]
	if r.Source.Service != "a" || r.Destination.Service != "b" || r.Destination.Version != "v2" || r.Code != 503 || r.Duration != 10*time.Millisecond {
		t.Fatalf("record = %+v", r)
	}
	if p.Pending() != 0 {
		t.Fatalf("pending = %d after pairing", p.Pending())
	}
}

func TestUnpairedHalvesBecomeRecordsAfterTheWait(t *testing.T) {
	now := time.Unix(1000, 0)
	p := NewPairer(time.Second, 100)
	td := ptrace.NewTraces()
	span(td, "b", "v1", ptrace.SpanKindServer, 1, 2, 9, now, time.Millisecond)    // caller never reports
	c := span(td, "a", "", ptrace.SpanKindClient, 3, 4, 0, now, time.Millisecond) // callee never reports
	c.Attributes().PutStr("server.address", "payments.shop.svc.cluster.local")
	if got := p.Add(td, now); len(got) != 0 {
		t.Fatalf("%d records before the wait", len(got))
	}
	if got := p.Expire(now.Add(500 * time.Millisecond)); len(got) != 0 {
		t.Fatalf("%d records before the wait is over", len(got))
	}
	got := p.Expire(now.Add(2 * time.Second))
	if len(got) != 2 {
		t.Fatalf("%d records after the wait, want 2", len(got))
	}
	if got[0].Source.Service != "" || got[0].Destination.Service != "b" {
		t.Errorf("unpaired server = %+v, want unknown caller of b", got[0])
	}
	if got[1].Destination.Service != "payments" || got[1].Destination.Namespace != "shop" {
		t.Errorf("unpaired client = %+v, want a call to payments.shop", got[1])
	}
}

func TestRootServerSpanIsAnUnknownCallerAtOnce(t *testing.T) {
	td := ptrace.NewTraces()
	span(td, "front", "", ptrace.SpanKindServer, 1, 1, 0, time.Unix(1, 0), time.Millisecond)
	got := NewPairer(time.Second, 10).Add(td, time.Unix(1, 0))
	if len(got) != 1 || got[0].Source.OrUnknown().Service != mesh.Unknown {
		t.Fatalf("records = %+v", got)
	}
}

func TestPendingBoundReleasesOldest(t *testing.T) {
	p := NewPairer(time.Hour, 2)
	td := ptrace.NewTraces()
	for i := byte(1); i <= 3; i++ {
		span(td, "b", "", ptrace.SpanKindServer, i, i, 100+i, time.Unix(1, 0), time.Millisecond)
	}
	got := p.Add(td, time.Unix(1, 0))
	if len(got) != 1 || p.Pending() != 2 {
		t.Fatalf("released %d, pending %d; want 1 and 2", len(got), p.Pending())
	}
}

func TestInboundEntryFromMeshCallerIsLeftToTheCallersProxy(t *testing.T) {
	logs := plog.NewLogs()
	rl := logs.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "reviews")
	lrs := rl.ScopeLogs().AppendEmpty().LogRecords()
	mk := func(principal string) {
		lr := lrs.AppendEmpty()
		lr.Attributes().PutStr(accesslog.AttrUpstreamCluster, "inbound|9080||")
		lr.Attributes().PutInt(accesslog.AttrResponseCode, 200)
		if principal != "" {
			lr.Attributes().PutStr(accesslog.AttrPeerPrincipal, principal)
			lr.Attributes().PutBool(accesslog.AttrMTLS, true)
		}
	}
	mk("spiffe://cluster.local/ns/shop/sa/productpage") // reported by productpage's proxy as outbound
	mk("")                                              // from outside the mesh
	recs, rows := Logs(logs, LogOptions{})
	if len(rows) != 0 || len(recs) != 1 || recs[0].Destination.Service != "reviews" || recs[0].Source.Service != "" {
		t.Fatalf("records = %+v, rows = %d", recs, len(rows))
	}

	// A mesh of proxyless callers: their inbound entries are the only
	// report of the request, and the caller is named by its identity.
	recs, _ = Logs(logs, LogOptions{InboundFromMesh: true})
	if len(recs) != 2 || recs[0].Source.Namespace != "shop" || !recs[0].MTLS || recs[0].Destination.Service != "reviews" {
		t.Fatalf("with inbound entries from the mesh kept: records = %+v", recs)
	}
}

func TestApplicationLogsAreNotRequests(t *testing.T) {
	logs := plog.NewLogs()
	lr := logs.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords().AppendEmpty()
	lr.Body().SetStr("user logged in")
	lr.Attributes().PutStr("user", "ada")
	recs, rows := Logs(logs, LogOptions{})
	if len(recs) != 0 || len(rows) != 1 || rows[0].Body != "user logged in" || rows[0].AttrKeys[0] != "user" {
		t.Fatalf("records %d, rows %+v", len(recs), rows)
	}
}

func FuzzTraces(f *testing.F) {
	td := ptrace.NewTraces()
	span(td, "a", "v1", ptrace.SpanKindClient, 1, 1, 0, time.Unix(1, 0), time.Millisecond).Attributes().PutStr("server.address", "b:80")
	span(td, "b", "v1", ptrace.SpanKindServer, 1, 2, 1, time.Unix(1, 0), time.Millisecond).Attributes().PutStr("rpc.system", "grpc")
	seed, _ := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	f.Add(seed)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		td, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(data)
		if err != nil {
			return
		}
		rows := Spans(td, nil)
		if len(rows) != td.SpanCount() {
			t.Fatalf("%d rows for %d spans", len(rows), td.SpanCount())
		}
		p := NewPairer(time.Second, 1000)
		recs := p.Add(td, time.Unix(0, 0))
		recs = append(recs, p.Expire(time.Unix(10, 0))...)
		if len(recs) > td.SpanCount() || p.Pending() != 0 {
			t.Fatalf("%d records from %d spans, %d pending", len(recs), td.SpanCount(), p.Pending())
		}
	})
}

func FuzzLogs(f *testing.F) {
	logs := plog.NewLogs()
	lr := logs.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords().AppendEmpty()
	lr.Attributes().PutStr(accesslog.AttrUpstreamCluster, "outbound|80|v1|b.ns.svc.cluster.local")
	lr.Attributes().PutStr(accesslog.AttrResponseCode, "503")
	lr.Attributes().PutDouble(accesslog.AttrDurationMs, 12.5)
	seed, _ := (&plog.ProtoMarshaler{}).MarshalLogs(logs)
	f.Add(seed)
	f.Fuzz(func(t *testing.T, data []byte) {
		ld, err := (&plog.ProtoUnmarshaler{}).UnmarshalLogs(data)
		if err != nil {
			return
		}
		recs, rows := Logs(ld, LogOptions{})
		if len(recs)+len(rows) > ld.LogRecordCount() {
			t.Fatalf("%d+%d rows from %d log records", len(recs), len(rows), ld.LogRecordCount())
		}
		for _, r := range recs {
			if r.Code > 999 || r.GRPCStatus < -1 || r.GRPCStatus > 16 {
				t.Fatalf("out-of-range record %+v", r)
			}
		}
	})
}

func FuzzMetrics(f *testing.F) {
	md := pmetric.NewMetrics()
	m := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
	m.SetName("requests")
	m.SetEmptySum().DataPoints().AppendEmpty().SetIntValue(3)
	seed, _ := (&pmetric.ProtoMarshaler{}).MarshalMetrics(md)
	f.Add(seed)
	f.Fuzz(func(t *testing.T, data []byte) {
		md, err := (&pmetric.ProtoUnmarshaler{}).UnmarshalMetrics(data)
		if err != nil {
			return
		}
		if got := Metrics(md); len(got) > md.DataPointCount() {
			t.Fatalf("%d rows from %d points", len(got), md.DataPointCount())
		}
	})
}

func TestGRPCMethodUnderBothSemanticConventions(t *testing.T) {
	for _, tc := range []struct{ service, method, want string }{
		{"grpc.testing.TestService", "UnaryCall", "/grpc.testing.TestService/UnaryCall"},
		{"", "grpc.testing.TestService/UnaryCall", "/grpc.testing.TestService/UnaryCall"},
		{"", "", ""},
	} {
		if got := grpcMethod(tc.service, tc.method); got != tc.want {
			t.Errorf("grpcMethod(%q, %q) = %q, want %q", tc.service, tc.method, got, tc.want)
		}
	}
}

func TestGRPCStatusUnderNewSemanticConventions(t *testing.T) {
	td := ptrace.NewTraces()
	sp := span(td, "b", "v1", ptrace.SpanKindServer, 1, 1, 0, time.Unix(1, 0), time.Millisecond)
	sp.Attributes().PutStr("rpc.system.name", "grpc")
	sp.Attributes().PutStr("rpc.method", "shop.Cart/Add")
	sp.Attributes().PutStr("rpc.response.status_code", "DEADLINE_EXCEEDED")
	got := NewPairer(time.Second, 10).Add(td, time.Unix(1, 0))
	if len(got) != 1 || got[0].Protocol != "grpc" || got[0].GRPCStatus != 4 || got[0].Method != "/shop.Cart/Add" {
		t.Fatalf("records = %+v", got)
	}
}
