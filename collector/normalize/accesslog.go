package normalize

import (
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/meshlens/meshlens/collector/accesslog"
	"github.com/meshlens/meshlens/mesh"
	"github.com/meshlens/meshlens/store"
)

// LogOptions choose which access-log entries become request records.
type LogOptions struct {
	// InboundFromMesh keeps inbound entries whose caller is a mesh workload.
	// By default they are dropped: the caller's proxy reports the same
	// request as outbound, and counting both would double every edge.
	InboundFromMesh bool
	// Peers, when set, names the workloads behind the addresses an entry
	// carries (upstream host, downstream remote address, the proxy's own
	// k8s.pod.ip) where the entry itself does not: the callee's version
	// when the cluster name has no subset, a caller outside the proxies'
	// peer metadata, a proxy without Istio's node metadata.
	Peers mesh.PeerResolver
}

// Logs splits OTLP logs into mesh request records (Envoy access-log entries,
// from the ALS receiver or Envoy's OpenTelemetry access logger) and plain log
// rows (everything else).
func Logs(ld plog.Logs, opts LogOptions) (recs []mesh.Record, rows []store.LogRow) {
	rls := ld.ResourceLogs()
	for i := 0; i < rls.Len(); i++ {
		rl := rls.At(i)
		res := rl.Resource().Attributes()
		self := resolveSelf(opts.Peers, PeerOf(res), res)
		origin := mesh.OriginOTLPLog
		sls := rl.ScopeLogs()
		for j := 0; j < sls.Len(); j++ {
			sl := sls.At(j)
			if sl.Scope().Name() == accesslog.Scope {
				origin = mesh.OriginALS
			}
			lrs := sl.LogRecords()
			for k := 0; k < lrs.Len(); k++ {
				lr := lrs.At(k)
				if isAccessLog(lr) {
					if rec, keep := accessLogRecord(self, lr, origin, opts); keep {
						recs = append(recs, rec)
					}
					continue
				}
				rows = append(rows, logRow(self, lr))
			}
		}
	}
	return recs, rows
}

// isAccessLog reports whether a log record is an Envoy access-log entry
// rather than an application log line.
func isAccessLog(lr plog.LogRecord) bool {
	a := lr.Attributes()
	_, cluster := a.Get(accesslog.AttrUpstreamCluster)
	_, code := a.Get(accesslog.AttrResponseCode)
	_, dur := a.Get(accesslog.AttrDurationMs)
	return cluster || (code && dur)
}

// accessLogRecord builds the record of one access-log entry written by the
// proxy self. An outbound entry (upstream cluster "outbound|port|subset|host")
// names the caller (self) and the callee (host, version = subset; the rest
// from the upstream host's address). An inbound entry names the callee
// (self); its caller is what peer metadata, the mTLS identity and the
// downstream address say. keep is false for an inbound entry whose caller is
// a mesh workload (named by peer metadata or an mTLS identity) unless
// opts.InboundFromMesh: the caller's own proxy reports the same request as
// outbound.
func accessLogRecord(self mesh.Peer, lr plog.LogRecord, origin mesh.Origin, opts LogOptions) (rec mesh.Record, keep bool) {
	a := lr.Attributes()
	rec = mesh.Record{
		Time:      lr.Timestamp().AsTime(),
		Method:    str(a, accesslog.AttrMethod),
		Path:      str(a, accesslog.AttrPath),
		Authority: str(a, accesslog.AttrAuthority),
		Flags:     str(a, accesslog.AttrResponseFlags),
		TraceID:   str(a, accesslog.AttrTraceID),
		Origin:    origin,
	}
	if lr.Timestamp() == 0 {
		rec.Time = lr.ObservedTimestamp().AsTime()
	}
	if rec.TraceID == "-" {
		rec.TraceID = "" // Envoy's command operators write "-" for no value
	}
	if rec.TraceID == "" && !lr.TraceID().IsEmpty() {
		rec.TraceID = lr.TraceID().String()
	}
	if !lr.SpanID().IsEmpty() {
		rec.SpanID = lr.SpanID().String()
	}
	if rec.Flags == "" {
		rec.Flags = "-"
	}
	code, _ := integer(a, accesslog.AttrResponseCode)
	rec.Code = clampCode(code)
	g, ok := integer(a, accesslog.AttrGRPCStatus)
	rec.GRPCStatus = clampGRPC(g, ok)
	ms, _ := float(a, accesslog.AttrDurationMs)
	if ms > 0 {
		rec.Duration = time.Duration(ms * float64(time.Millisecond))
	}
	in, _ := integer(a, accesslog.AttrBytesReceived)
	out, _ := integer(a, accesslog.AttrBytesSent)
	rec.BytesIn, rec.BytesOut = uint64(max(in, 0)), uint64(max(out, 0))
	if v, ok := a.Get(accesslog.AttrMTLS); ok {
		rec.MTLS = v.Bool()
	}
	proto := str(a, accesslog.AttrProtocol)
	switch {
	case proto == "tcp":
		rec.Protocol = "tcp"
	case rec.GRPCStatus >= 0 || strings.HasPrefix(str(a, accesslog.AttrContentType), "application/grpc"):
		rec.Protocol = "grpc"
	default:
		rec.Protocol = "http"
	}
	if rec.Protocol == "grpc" && rec.GRPCStatus < 0 && rec.Code == 200 {
		rec.GRPCStatus = 0
	}

	caller := mesh.Peer{
		Service:   str(a, accesslog.AttrSourceService),
		Namespace: str(a, accesslog.AttrSourceNamespace),
		Version:   str(a, accesslog.AttrSourceVersion),
		Workload:  str(a, accesslog.AttrSourceWorkload),
	}
	if caller.Namespace == "" {
		caller.Namespace = namespaceOfPrincipal(str(a, accesslog.AttrPeerPrincipal))
	}
	cl, isCluster := mesh.ParseCluster(str(a, accesslog.AttrUpstreamCluster))
	switch {
	case isCluster && cl.Direction == "outbound":
		rec.Source = self
		svc, ns := mesh.ServiceOfHost(cl.Host)
		rec.Destination = mesh.Peer{Service: svc, Namespace: ns, Version: cl.Subset}
		if opts.Peers != nil && !known(rec.Destination) {
			rec.Destination = resolve(opts.Peers, rec.Destination, str(a, accesslog.AttrUpstreamHost))
		}
		if rec.Destination.Namespace == "" {
			rec.Destination.Namespace = self.Namespace
		}
		return rec, true
	default: // inbound, or an entry without cluster: self is the callee
		rec.Destination = self
		rec.Source = caller
		// Whether the caller's proxy reports the request too is what the
		// entry says, not the registry: a Pod without a sidecar reports
		// nothing, and its requests are counted here.
		fromMesh := caller.Service != "" || caller.Namespace != "" || rec.MTLS
		if fromMesh && !opts.InboundFromMesh {
			return rec, false
		}
		if opts.Peers != nil && !known(rec.Source) {
			rec.Source = resolve(opts.Peers, rec.Source, str(a, accesslog.AttrDownstreamRemote))
		}
		return rec, true
	}
}

// namespaceOfPrincipal reads NS from spiffe://TRUST_DOMAIN/ns/NS/sa/SA.
func namespaceOfPrincipal(p string) string {
	const marker = "/ns/"
	i := strings.Index(p, marker)
	if !strings.HasPrefix(p, "spiffe://") || i < 0 {
		return ""
	}
	rest := p[i+len(marker):]
	if j := strings.IndexByte(rest, '/'); j >= 0 {
		return rest[:j]
	}
	return rest
}

func logRow(self mesh.Peer, lr plog.LogRecord) store.LogRow {
	row := store.LogRow{
		Time:     lr.Timestamp().AsTime(),
		Severity: lr.SeverityText(),
		Body:     lr.Body().AsString(),
		Peer:     self,
	}
	if lr.Timestamp() == 0 {
		row.Time = lr.ObservedTimestamp().AsTime()
	}
	if row.Severity == "" && lr.SeverityNumber() != plog.SeverityNumberUnspecified {
		row.Severity = lr.SeverityNumber().String()
	}
	if !lr.TraceID().IsEmpty() {
		row.TraceID = lr.TraceID().String()
	}
	if !lr.SpanID().IsEmpty() {
		row.SpanID = lr.SpanID().String()
	}
	row.AttrKeys, row.AttrValues = flatten(lr.Attributes())
	return row
}
