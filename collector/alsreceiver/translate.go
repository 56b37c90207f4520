package alsreceiver

import (
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	datav3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshlens/meshlens/collector/accesslog"
	"github.com/meshlens/meshlens/mesh"
)

// identity is what the first message of a stream says about the proxy.
type identity struct {
	nodeID    string
	logName   string
	service   string
	version   string
	namespace string
	workload  string
	pod       string
	podIP     string
}

// identityOf reads Istio's node metadata (NAMESPACE, NAME, WORKLOAD_NAME,
// LABELS{app,version,service.istio.io/canonical-*}, INSTANCE_IPS) and falls
// back to the node cluster, which Istio sets to "service.namespace".
func identityOf(id *alsv3.StreamAccessLogsMessage_Identifier) (identity, error) {
	node := id.GetNode()
	if node == nil {
		return identity{}, fmt.Errorf("identifier.node is missing: the first message of an ALS stream must name its Envoy node")
	}
	ident := identity{nodeID: node.GetId(), logName: id.GetLogName()}
	md := node.GetMetadata().GetFields()
	str := func(m map[string]*structpb.Value, k string) string { return m[k].GetStringValue() }
	labels := md["LABELS"].GetStructValue().GetFields()
	ident.namespace = str(md, "NAMESPACE")
	ident.pod = str(md, "NAME")
	ident.workload = str(md, "WORKLOAD_NAME")
	// The Pod's addresses, "10.1.2.3,fd00::3": with a Kubernetes registry
	// the first names the proxy when the rest of the metadata does not.
	ident.podIP, _, _ = strings.Cut(str(md, "INSTANCE_IPS"), ",")
	ident.service = firstNonEmpty(str(labels, "service.istio.io/canonical-name"), str(labels, "app"), str(labels, "app.kubernetes.io/name"))
	ident.version = firstNonEmpty(str(labels, "service.istio.io/canonical-revision"), str(labels, "version"), str(labels, "app.kubernetes.io/version"))
	if ident.service == "" || ident.namespace == "" {
		svc, ns := mesh.ServiceOfHost(node.GetCluster())
		if ident.service == "" {
			ident.service = svc
		}
		if ident.namespace == "" {
			ident.namespace = ns
		}
	}
	if ident.service == "" {
		ident.service = ident.workload
	}
	if ident.version == "latest" {
		ident.version = "" // Istio's placeholder when there is no version label
	}
	return ident, nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// toLogs converts one ALS message into OpenTelemetry logs: one resource for
// the proxy, one log record per entry, attributes in the accesslog vocabulary.
func toLogs(ident identity, msg *alsv3.StreamAccessLogsMessage) (plog.Logs, int, error) {
	logs := plog.NewLogs()
	rl := logs.ResourceLogs().AppendEmpty()
	res := rl.Resource().Attributes()
	putNonEmpty(res, accesslog.ResService, ident.service)
	putNonEmpty(res, accesslog.ResVersion, ident.version)
	putNonEmpty(res, accesslog.ResNamespace, ident.namespace)
	putNonEmpty(res, accesslog.ResWorkload, ident.workload)
	putNonEmpty(res, accesslog.ResPod, ident.pod)
	putNonEmpty(res, accesslog.ResPodIP, ident.podIP)
	putNonEmpty(res, accesslog.AttrEnvoyNodeID, ident.nodeID)
	sl := rl.ScopeLogs().AppendEmpty()
	sl.Scope().SetName(accesslog.Scope)
	records := sl.LogRecords()

	n := 0
	switch entries := msg.GetLogEntries().(type) {
	case *alsv3.StreamAccessLogsMessage_HttpLogs:
		for i, e := range entries.HttpLogs.GetLogEntry() {
			if e == nil {
				return plog.Logs{}, 0, fmt.Errorf("http_logs.log_entry[%d] is empty", i)
			}
			lr := records.AppendEmpty()
			putCommon(lr, e.GetCommonProperties())
			putHTTP(lr.Attributes(), e)
			n++
		}
	case *alsv3.StreamAccessLogsMessage_TcpLogs:
		for i, e := range entries.TcpLogs.GetLogEntry() {
			if e == nil {
				return plog.Logs{}, 0, fmt.Errorf("tcp_logs.log_entry[%d] is empty", i)
			}
			lr := records.AppendEmpty()
			putCommon(lr, e.GetCommonProperties())
			a := lr.Attributes()
			a.PutStr(accesslog.AttrProtocol, "tcp")
			a.PutInt(accesslog.AttrBytesReceived, int64(e.GetConnectionProperties().GetReceivedBytes()))
			a.PutInt(accesslog.AttrBytesSent, int64(e.GetConnectionProperties().GetSentBytes()))
			n++
		}
	case nil:
		// A message with only an identifier is legal.
	default:
		return plog.Logs{}, 0, fmt.Errorf("unsupported log_entries type %T", entries)
	}
	return logs, n, nil
}

func putNonEmpty(m pcommon.Map, k, v string) {
	if v != "" {
		m.PutStr(k, v)
	}
}

func putCommon(lr plog.LogRecord, c *datav3.AccessLogCommon) {
	a := lr.Attributes()
	start := c.GetStartTime().AsTime()
	if c.GetStartTime() == nil {
		start = time.Now()
	}
	lr.SetTimestamp(pcommon.NewTimestampFromTime(start))
	lr.SetObservedTimestamp(pcommon.NewTimestampFromTime(time.Now()))
	cluster := c.GetUpstreamCluster()
	putNonEmpty(a, accesslog.AttrUpstreamCluster, cluster)
	if cl, ok := mesh.ParseCluster(cluster); ok {
		a.PutStr(accesslog.AttrDirection, cl.Direction)
	}
	putNonEmpty(a, accesslog.AttrUpstreamHost, addr(c.GetUpstreamRemoteAddress()))
	putNonEmpty(a, accesslog.AttrDownstreamRemote, addr(c.GetDownstreamRemoteAddress()))
	a.PutStr(accesslog.AttrResponseFlags, Flags(c.GetResponseFlags()))
	// Duration: the whole stream when Envoy reports it, else last downstream byte.
	d := c.GetDuration().AsDuration()
	if c.GetDuration() == nil {
		d = c.GetTimeToLastDownstreamTxByte().AsDuration()
	}
	a.PutDouble(accesslog.AttrDurationMs, float64(d)/float64(time.Millisecond))
	tls := c.GetTlsProperties()
	mtls := tls != nil && len(tls.GetPeerCertificateProperties().GetSubjectAltName()) > 0
	a.PutBool(accesslog.AttrMTLS, mtls)
	for _, san := range tls.GetPeerCertificateProperties().GetSubjectAltName() {
		if uri := san.GetUri(); uri != "" {
			a.PutStr(accesslog.AttrPeerPrincipal, uri)
			break
		}
	}
	if md := c.GetMetadata().GetFilterMetadata()["istio.peer"].GetFields(); md != nil {
		putNonEmpty(a, accesslog.AttrSourceService, md["app"].GetStringValue())
		putNonEmpty(a, accesslog.AttrSourceVersion, md["version"].GetStringValue())
		putNonEmpty(a, accesslog.AttrSourceNamespace, md["namespace"].GetStringValue())
		putNonEmpty(a, accesslog.AttrSourceWorkload, md["workload"].GetStringValue())
	}
}

func putHTTP(a pcommon.Map, e *datav3.HTTPAccessLogEntry) {
	req, resp := e.GetRequest(), e.GetResponse()
	proto := "HTTP/1.1"
	switch e.GetProtocolVersion() {
	case datav3.HTTPAccessLogEntry_HTTP10:
		proto = "HTTP/1.0"
	case datav3.HTTPAccessLogEntry_HTTP2:
		proto = "HTTP/2"
	case datav3.HTTPAccessLogEntry_HTTP3:
		proto = "HTTP/3"
	}
	a.PutStr(accesslog.AttrProtocol, proto)
	if m := req.GetRequestMethod(); m != corev3.RequestMethod_METHOD_UNSPECIFIED {
		a.PutStr(accesslog.AttrMethod, m.String())
	}
	putNonEmpty(a, accesslog.AttrPath, req.GetPath())
	putNonEmpty(a, accesslog.AttrAuthority, req.GetAuthority())
	putNonEmpty(a, accesslog.AttrRequestID, req.GetRequestId())
	ct := req.GetRequestHeaders()["content-type"]
	putNonEmpty(a, accesslog.AttrContentType, ct)
	if tp := req.GetRequestHeaders()["traceparent"]; tp != "" {
		if id := traceIDOfTraceparent(tp); id != "" {
			a.PutStr(accesslog.AttrTraceID, id)
		}
	} else if b3 := req.GetRequestHeaders()["x-b3-traceid"]; b3 != "" {
		a.PutStr(accesslog.AttrTraceID, b3)
	}
	a.PutInt(accesslog.AttrBytesReceived, int64(req.GetRequestHeadersBytes()+req.GetRequestBodyBytes()))
	a.PutInt(accesslog.AttrBytesSent, int64(resp.GetResponseHeadersBytes()+resp.GetResponseBodyBytes()))
	if rc := resp.GetResponseCode(); rc != nil {
		a.PutInt(accesslog.AttrResponseCode, int64(rc.GetValue()))
	}
	status := resp.GetResponseTrailers()["grpc-status"]
	if status == "" {
		status = resp.GetResponseHeaders()["grpc-status"]
	}
	if status != "" {
		var s int64
		if _, err := fmt.Sscanf(status, "%d", &s); err == nil && s >= 0 && s <= 16 {
			a.PutInt(accesslog.AttrGRPCStatus, s)
		}
	}
}

// traceIDOfTraceparent returns the trace id of a W3C traceparent header.
func traceIDOfTraceparent(tp string) string {
	parts := strings.Split(tp, "-")
	if len(parts) < 4 || len(parts[1]) != 32 {
		return ""
	}
	if _, err := hex.DecodeString(parts[1]); err != nil {
		return ""
	}
	return parts[1]
}

func addr(a *corev3.Address) string {
	sa := a.GetSocketAddress()
	if sa == nil {
		return ""
	}
	// "[fd00::1]:80" for IPv6, as Envoy prints it and the registry reads it.
	return net.JoinHostPort(sa.GetAddress(), strconv.FormatUint(uint64(sa.GetPortValue()), 10))
}

// Flags formats Envoy response flags the way Envoy's %RESPONSE_FLAGS% does:
// short codes joined by commas, "-" when none.
func Flags(f *datav3.ResponseFlags) string {
	if f == nil {
		return "-"
	}
	var out []string
	add := func(on bool, code string) {
		if on {
			out = append(out, code)
		}
	}
	add(f.GetFailedLocalHealthcheck(), "LH")
	add(f.GetNoHealthyUpstream(), "UH")
	add(f.GetUpstreamRequestTimeout(), "UT")
	add(f.GetLocalReset(), "LR")
	add(f.GetUpstreamRemoteReset(), "UR")
	add(f.GetUpstreamConnectionFailure(), "UF")
	add(f.GetUpstreamConnectionTermination(), "UC")
	add(f.GetUpstreamOverflow(), "UO")
	add(f.GetNoRouteFound(), "NR")
	add(f.GetDelayInjected(), "DI")
	add(f.GetFaultInjected(), "FI")
	add(f.GetRateLimited(), "RL")
	add(f.GetUnauthorizedDetails() != nil, "UAEX")
	add(f.GetRateLimitServiceError(), "RLSE")
	add(f.GetDownstreamConnectionTermination(), "DC")
	add(f.GetUpstreamRetryLimitExceeded(), "URX")
	add(f.GetStreamIdleTimeout(), "SI")
	add(f.GetInvalidEnvoyRequestHeaders(), "IH")
	add(f.GetDownstreamProtocolError(), "DPE")
	add(f.GetUpstreamMaxStreamDurationReached(), "UMSDR")
	add(f.GetResponseFromCacheFilter(), "RFCF")
	add(f.GetNoFilterConfigFound(), "NFCF")
	add(f.GetDurationTimeout(), "DT")
	add(f.GetUpstreamProtocolError(), "UPE")
	add(f.GetNoClusterFound(), "NC")
	add(f.GetOverloadManager(), "OM")
	add(f.GetDnsResolutionFailure(), "DF")
	add(f.GetDownstreamRemoteReset(), "DR")
	if len(out) == 0 {
		return "-"
	}
	return strings.Join(out, ",")
}
