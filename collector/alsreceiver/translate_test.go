package alsreceiver

import (
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	datav3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshlens/meshlens/collector/accesslog"
	"github.com/meshlens/meshlens/collector/normalize"
)

func TestIdentityComesFromIstioNodeMetadata(t *testing.T) {
	md, _ := structpb.NewStruct(map[string]any{
		"NAMESPACE": "shop", "WORKLOAD_NAME": "reviews-v2", "INSTANCE_IPS": "10.1.0.7,fd00::7",
		"LABELS": map[string]any{"service.istio.io/canonical-name": "reviews", "service.istio.io/canonical-revision": "v2"},
	})
	id, err := identityOf(&alsv3.StreamAccessLogsMessage_Identifier{Node: &corev3.Node{Id: "n", Metadata: md}})
	if err != nil {
		t.Fatal(err)
	}
	if id.service != "reviews" || id.version != "v2" || id.namespace != "shop" || id.workload != "reviews-v2" || id.podIP != "10.1.0.7" {
		t.Fatalf("identity = %+v", id)
	}
	// Without metadata, the node cluster "service.namespace" names it.
	id, _ = identityOf(&alsv3.StreamAccessLogsMessage_Identifier{Node: &corev3.Node{Id: "n", Cluster: "ratings.shop"}})
	if id.service != "ratings" || id.namespace != "shop" {
		t.Fatalf("identity from cluster = %+v", id)
	}
}

func TestGRPCStatusFromTrailersMakesAGRPCRecord(t *testing.T) {
	msg := &alsv3.StreamAccessLogsMessage{LogEntries: &alsv3.StreamAccessLogsMessage_HttpLogs{HttpLogs: &alsv3.StreamAccessLogsMessage_HTTPAccessLogEntries{
		LogEntry: []*datav3.HTTPAccessLogEntry{{
			CommonProperties: &datav3.AccessLogCommon{UpstreamCluster: "outbound|9080|v1|ratings.shop.svc.cluster.local", Duration: durationpb.New(3 * time.Millisecond)},
			ProtocolVersion:  datav3.HTTPAccessLogEntry_HTTP2,
			Request:          &datav3.HTTPRequestProperties{Path: "/ratings.Ratings/Get", RequestHeaders: map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}},
			Response:         &datav3.HTTPResponseProperties{ResponseCode: wrapperspb.UInt32(200), ResponseTrailers: map[string]string{"grpc-status": "14"}},
		}},
	}}}
	logs, n, err := toLogs(identity{service: "reviews", version: "v3", namespace: "shop"}, msg)
	if err != nil || n != 1 {
		t.Fatalf("toLogs: %d, %v", n, err)
	}
	attrs := logs.ResourceLogs().At(0).ScopeLogs().At(0).LogRecords().At(0).Attributes()
	if v, _ := attrs.Get(accesslog.AttrTraceID); v.Str() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("trace id = %q", v.Str())
	}
	recs, _ := normalize.Logs(logs, normalize.LogOptions{})
	if len(recs) != 1 {
		t.Fatalf("records = %d", len(recs))
	}
	r := recs[0]
	if r.Protocol != "grpc" || r.GRPCStatus != 14 || !r.IsError() || r.Destination.Service != "ratings" || r.Source.Version != "v3" {
		t.Fatalf("record = %+v", r)
	}
}

func TestFlagsFormatLikeEnvoy(t *testing.T) {
	if got := Flags(nil); got != "-" {
		t.Errorf("no flags = %q", got)
	}
	if got := Flags(&datav3.ResponseFlags{NoHealthyUpstream: true, UpstreamRetryLimitExceeded: true}); got != "UH,URX" {
		t.Errorf("flags = %q, want UH,URX", got)
	}
}

// FuzzStreamMessage feeds arbitrary ALS messages through the translation and
// the normaliser: nothing may panic, and an error is the only way to refuse.
func FuzzStreamMessage(f *testing.F) {
	seed := &alsv3.StreamAccessLogsMessage{
		Identifier: &alsv3.StreamAccessLogsMessage_Identifier{Node: &corev3.Node{Id: "x", Cluster: "a.b"}},
		LogEntries: &alsv3.StreamAccessLogsMessage_HttpLogs{HttpLogs: &alsv3.StreamAccessLogsMessage_HTTPAccessLogEntries{
			LogEntry: []*datav3.HTTPAccessLogEntry{{CommonProperties: &datav3.AccessLogCommon{UpstreamCluster: "outbound|1|v|h"}}},
		}},
	}
	b, _ := proto.Marshal(seed)
	f.Add(b)
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x02, 0x0a, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		var msg alsv3.StreamAccessLogsMessage
		if proto.Unmarshal(data, &msg) != nil {
			return
		}
		ident := identity{}
		if msg.GetIdentifier() != nil {
			var err error
			if ident, err = identityOf(msg.GetIdentifier()); err != nil {
				return
			}
		}
		logs, n, err := toLogs(ident, &msg)
		if err != nil {
			return
		}
		if logs.LogRecordCount() != n {
			t.Fatalf("%d log records for %d entries", logs.LogRecordCount(), n)
		}
		recs, rows := normalize.Logs(logs, normalize.LogOptions{})
		if len(recs)+len(rows) > n {
			t.Fatalf("%d records + %d rows from %d entries", len(recs), len(rows), n)
		}
	})
}

func TestAddressesPrintLikeEnvoy(t *testing.T) {
	for _, tc := range []struct {
		ip   string
		port uint32
		want string
	}{
		{"10.0.0.7", 9080, "10.0.0.7:9080"},
		{"fd00::7", 80, "[fd00::7]:80"}, // so the port splits off again
	} {
		a := &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: tc.ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: tc.port}}}}
		if got := addr(a); got != tc.want {
			t.Errorf("addr(%s, %d) = %q, want %q", tc.ip, tc.port, got, tc.want)
		}
	}
	if got := addr(nil); got != "" {
		t.Errorf("addr(nil) = %q", got)
	}
}
