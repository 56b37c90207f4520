package collector

import (
	"context"
	"net/http"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/extension"
	"go.opentelemetry.io/collector/extension/extensionmiddleware"
	"google.golang.org/grpc"

	"github.com/meshlens/meshlens/listeners"
)

// listenerExtType is meshlens' middleware extension for the OTLP receiver's
// servers: through it they take meshlens' limits and count when they bite.
// Its instance name is the listener's name in the metrics (otlp_grpc,
// otlp_http).
var listenerExtType = component.MustNewType("meshlens_listener")

// serveHTTP serves the OTLP/HTTP receiver's handler (its routes, behind
// the middleware) on meshlens' own listener; see Collector.serveOTLPHTTP.
type serveHTTP func(ctx context.Context, tel component.TelemetrySettings, h http.Handler) error

func newListenerExtFactory(m *listeners.Metrics, l listeners.Limits, serve serveHTTP) extension.Factory {
	return extension.NewFactory(listenerExtType,
		func() component.Config { return &struct{}{} },
		func(_ context.Context, set extension.Settings, _ component.Config) (extension.Extension, error) {
			return &listenerExt{name: set.ID.Name(), m: m, l: l, serve: serve, tel: set.TelemetrySettings}, nil
		}, component.StabilityLevelStable)
}

type listenerExt struct {
	component.StartFunc
	component.ShutdownFunc
	name  string
	m     *listeners.Metrics
	l     listeners.Limits
	serve serveHTTP
	tel   component.TelemetrySettings
}

var (
	_ extensionmiddleware.GRPCServer = (*listenerExt)(nil)
	_ extensionmiddleware.HTTPServer = (*listenerExt)(nil)
)

func (e *listenerExt) GetGRPCServerOptions(context.Context) ([]grpc.ServerOption, error) {
	return e.m.GRPCServerOptions(e.name, e.l), nil
}

func (e *listenerExt) GetHTTPHandler(context.Context) (extensionmiddleware.WrapHTTPHandlerFunc, error) {
	return func(ctx context.Context, h http.Handler) (http.Handler, error) {
		h = e.m.LimitBody(e.name, int64(e.l.MaxMessageBytes), h)
		// The timeouts are counted by the connections of meshlens' own
		// listener, which the receiver's server does not use.
		if e.serve != nil {
			if err := e.serve(ctx, e.tel, h); err != nil {
				return nil, err
			}
		}
		return h, nil
	}, nil
}
