// Package accesslog defines how an Envoy access-log entry looks as an
// OpenTelemetry log record inside meshlens' collector: the attribute names the
// Envoy ALS receiver writes and the normaliser reads. They follow Envoy's own
// access-log command names (lower-cased), which is also what users configure
// for Envoy's OpenTelemetry access logger, so OTLP access logs from Envoy need
// no translation.
package accesslog

// Log record attributes.
const (
	AttrUpstreamCluster  = "upstream_cluster" // outbound|9080|v2|reviews.default.svc.cluster.local
	AttrUpstreamHost     = "upstream_host"    // 10.0.0.7:9080
	AttrDownstreamRemote = "downstream_remote_address"
	AttrResponseCode     = "response_code"           // int
	AttrGRPCStatus       = "grpc_status"             // int
	AttrResponseFlags    = "response_flags"          // "UH,UT", "-" for none
	AttrDurationMs       = "duration"                // float, milliseconds
	AttrBytesReceived    = "bytes_received"          // int
	AttrBytesSent        = "bytes_sent"              // int
	AttrMethod           = "method"                  // GET
	AttrPath             = "path"                    // /reviews/1
	AttrAuthority        = "authority"               // reviews:9080
	AttrProtocol         = "protocol"                // HTTP/1.1, HTTP/2, tcp
	AttrContentType      = "content_type"            // application/grpc
	AttrDirection        = "direction"               // "outbound" or "inbound"
	AttrPeerPrincipal    = "downstream_peer_uri_san" // spiffe://cluster.local/ns/NS/sa/SA
	AttrMTLS             = "mtls"                    // bool: the downstream connection was mutually authenticated
	AttrTraceID          = "trace_id"                // hex
	AttrRequestID        = "request_id"
	AttrEnvoyNodeID      = "envoy.node.id"
	AttrEnvoyLogName     = "envoy.log_name"
	AttrSourceService    = "source.service" // set by a sender that knows the caller (optional)
	AttrSourceNamespace  = "source.namespace"
	AttrSourceVersion    = "source.version"
	AttrSourceWorkload   = "source.workload"
)

// Resource attributes naming the proxy that wrote the entry.
const (
	ResService   = "service.name"
	ResVersion   = "service.version"
	ResNamespace = "k8s.namespace.name"
	ResWorkload  = "k8s.deployment.name"
	ResPod       = "k8s.pod.name"
	ResPodIP     = "k8s.pod.ip" // with a Kubernetes registry, names the proxy when the rest does not
)

// Scope is the instrumentation scope name of logs produced by the ALS receiver.
const Scope = "meshlens/envoyals"
