// Package alsreceiver is an OpenTelemetry collector receiver for Envoy's gRPC
// Access Log Service (envoy.service.accesslog.v3). Every HTTP or TCP entry
// becomes a log record whose attributes follow the accesslog vocabulary, with
// the proxy's identity (from Istio node metadata) on the resource.
package alsreceiver

import (
	"context"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/receiver"
	"google.golang.org/grpc"
)

// Type is the component type name used in collector configuration.
var Type = component.MustNewType("envoyals")

// Metrics is the receiver's own accounting, supplied by its owner. Accepted
// entries are counted downstream, where every signal is.
type Metrics interface {
	// Malformed counts messages refused as invalid.
	Malformed()
	// RateLimited counts stream messages held back by MaxEntriesPerSecond.
	RateLimited()
}

// NewFactory returns the receiver factory. metrics may be nil; opts go to
// the gRPC server (limits, credentials).
func NewFactory(metrics Metrics, opts ...grpc.ServerOption) receiver.Factory {
	return receiver.NewFactory(Type,
		func() component.Config { return &Config{Endpoint: "127.0.0.1:19001", MaxRecvMsgSizeMiB: 16} },
		receiver.WithLogs(func(_ context.Context, set receiver.Settings, cfg component.Config, next consumer.Logs) (receiver.Logs, error) {
			return newReceiver(cfg.(*Config), set, next, metrics, opts), nil
		}, component.StabilityLevelBeta))
}
