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

// statsHandler returns the otelgrpc stats handler for a client or a server,
// propagating W3C trace context so that a client span and the server span it
// causes share a trace and pair up in the collector.
func statsHandler(tp trace.TracerProvider, client bool) stats.Handler {
	opts := []otelgrpc.Option{
		otelgrpc.WithTracerProvider(tp),
		otelgrpc.WithPropagators(propagation.TraceContext{}),
	}
	var h stats.Handler
	if client {
		h = otelgrpc.NewClientHandler(opts...)
	} else {
		h = otelgrpc.NewServerHandler(opts...)
	}
	return statusCodeHandler{h}
}

// statusCodeHandler adds the numeric rpc.grpc.status_code attribute to each
// span before it ends. Current otelgrpc only writes the newer
// rpc.response.status_code (a code name); collectors that read the older,
// numeric attribute get it too.
type statusCodeHandler struct{ stats.Handler }

func (h statusCodeHandler) HandleRPC(ctx context.Context, s stats.RPCStats) {
	if end, ok := s.(*stats.End); ok {
		if span := trace.SpanFromContext(ctx); span.IsRecording() {
			span.SetAttributes(attribute.Int("rpc.grpc.status_code", int(status.Code(end.Error))))
		}
	}
	h.Handler.HandleRPC(ctx, s)
}
