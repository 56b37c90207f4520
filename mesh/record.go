package mesh

import (
	"context"
	"time"
)

// Unknown names a peer that the telemetry did not identify. Unknown callers are
// a node of the graph, never dropped.
const Unknown = "unknown"

// Peer is one side of a request.
type Peer struct {
	Namespace string `json:"namespace"`
	Service   string `json:"service"`
	Workload  string `json:"workload"`
	Version   string `json:"version"`
}

// OrUnknown returns p with an empty service replaced by Unknown.
func (p Peer) OrUnknown() Peer {
	if p.Service == "" {
		p.Service = Unknown
	}
	return p
}

// Origin says which telemetry produced a record.
type Origin string

const (
	OriginALS      Origin = "als"      // Envoy gRPC access log service
	OriginOTLPLog  Origin = "otlp-log" // Envoy OpenTelemetry access logger, or any OTLP log shaped like one
	OriginSpanPair Origin = "span"     // a client span and its server span
)

// Record is one mesh request: every access-log entry and every client/server
// span pair becomes exactly one.
type Record struct {
	Time        time.Time     // start of the request
	Source      Peer          // caller; Service is Unknown when not known
	Destination Peer          // callee
	Protocol    string        // "http", "grpc" or "tcp"
	Method      string        // HTTP method, or the gRPC full method
	Path        string        // HTTP path or route
	Authority   string        // Host / :authority
	Code        uint16        // HTTP status; 0 when there was no response
	GRPCStatus  int16         // gRPC status code; -1 when not gRPC or unknown
	Flags       string        // Envoy response flags, "-" when none
	Duration    time.Duration // total duration
	BytesIn     uint64        // request bytes received by the destination
	BytesOut    uint64        // response bytes sent by the destination
	MTLS        bool          // the connection was mutually authenticated
	TraceID     string        // hex, empty when none
	SpanID      string        // hex, empty when none
	Origin      Origin
}

// IsError reports whether the request failed from the caller's point of view:
// a 5xx, no response at all, or a non-OK gRPC status.
func (r *Record) IsError() bool {
	if r.Code >= 500 || (r.Code == 0 && r.Protocol != "tcp") {
		return true
	}
	return r.GRPCStatus > 0
}

// RecordSink consumes mesh request records. The collector hands every record it
// accepts to its sinks (ClickHouse, the live graph).
type RecordSink interface {
	ConsumeRecords(ctx context.Context, recs []Record) error
}
