package demo

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
)

// peerIdentity is what a workload says about itself in its telemetry.
type peerIdentity struct {
	Service, Version, Namespace, Workload string
}

// newTracerProvider builds one workload's tracer provider exporting to an
// OTLP/gRPC collector. Each workload has its own provider because the
// resource (service.name, service.version, ...) is per provider, and that is
// what the collector reads the peer from.
func newTracerProvider(ctx context.Context, collector string, id peerIdentity, batchTimeout time.Duration) (*sdktrace.TracerProvider, error) {
	exp, err := otlptracegrpc.New(ctx,
		otlptracegrpc.WithEndpoint(collector),
		otlptracegrpc.WithInsecure(),
		otlptracegrpc.WithTimeout(5*time.Second),
		// Drop a batch rather than pile retries up when the collector is away.
		otlptracegrpc.WithRetry(otlptracegrpc.RetryConfig{Enabled: false}),
	)
	if err != nil {
		return nil, fmt.Errorf("OTLP exporter for %s to %s: %w", id.Workload, collector, err)
	}
	res := resource.NewSchemaless(
		attribute.String("service.name", id.Service),
		attribute.String("service.version", id.Version),
		attribute.String("service.namespace", id.Namespace),
		attribute.String("k8s.namespace.name", id.Namespace),
		attribute.String("k8s.deployment.name", id.Workload),
		attribute.String("service.instance.id", id.Workload+"@127.0.0.1"),
	)
	return sdktrace.NewTracerProvider(
		sdktrace.WithResource(res),
		sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(batchTimeout), sdktrace.WithMaxQueueSize(8192)),
	), nil
}

// callee names the service a client calls, for its spans.
type callee struct {
	service string
	host    string // mesh host, reviews.bookinfo.svc.cluster.local
	port    int    // mesh port
}

// statsHandler returns the otelgrpc stats handler for a server (to == nil)
// or for a client of one mesh service, propagating W3C trace context so that
// a client span and the server span it causes share a trace and pair up in
// the collector.
func statsHandler(tp trace.TracerProvider, to *callee) stats.Handler {
	opts := []otelgrpc.Option{
		otelgrpc.WithTracerProvider(tp),
		otelgrpc.WithPropagators(propagation.TraceContext{}),
	}
	if to == nil {
		return meshAttributes{Handler: otelgrpc.NewServerHandler(opts...)}
	}
	return meshAttributes{Handler: otelgrpc.NewClientHandler(opts...), to: to}
}

// meshAttributes completes each span before it ends with what a mesh
// collector reads, whichever semantic-convention generation it follows:
// current otelgrpc writes rpc.system.name, a fully qualified rpc.method and
// the code name rpc.response.status_code; older readers want rpc.system and
// the numeric rpc.grpc.status_code. On client spans it names the callee as
// the mesh sees it (server.address = the mesh host, peer.service), not the
// endpoint IP that xDS picked, so a request that never reached a server
// still shows whom it was for.
type meshAttributes struct {
	stats.Handler
	to *callee
}

func (h meshAttributes) HandleRPC(ctx context.Context, s stats.RPCStats) {
	if end, ok := s.(*stats.End); ok {
		if span := trace.SpanFromContext(ctx); span.IsRecording() {
			span.SetAttributes(
				attribute.String("rpc.system", "grpc"),
				attribute.Int("rpc.grpc.status_code", int(status.Code(end.Error))),
			)
			if h.to != nil {
				span.SetAttributes(
					attribute.String("server.address", h.to.host),
					attribute.Int("server.port", h.to.port),
					attribute.String("peer.service", h.to.service),
				)
			}
		}
	}
	h.Handler.HandleRPC(ctx, s)
}
