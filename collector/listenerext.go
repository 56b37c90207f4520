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

func newListenerExtFactory(m *listeners.Metrics, l listeners.Limits) extension.Factory {
	return extension.NewFactory(listenerExtType,
		func() component.Config { return &struct{}{} },
		func(_ context.Context, set extension.Settings, _ component.Config) (extension.Extension, error) {
			return &listenerExt{name: set.ID.Name(), m: m, l: l}, nil
		}, component.StabilityLevelStable)
}

type listenerExt struct {
	component.StartFunc
	component.ShutdownFunc
	name string
	m    *listeners.Metrics
	l    listeners.Limits
}

var (
	_ extensionmiddleware.GRPCServer = (*listenerExt)(nil)
	_ extensionmiddleware.HTTPServer = (*listenerExt)(nil)
)

func (e *listenerExt) GetGRPCServerOptions(context.Context) ([]grpc.ServerOption, error) {
	return e.m.GRPCServerOptions(e.name, e.l), nil
}

func (e *listenerExt) GetHTTPHandler(context.Context) (extensionmiddleware.WrapHTTPHandlerFunc, error) {
	return func(_ context.Context, h http.Handler) (http.Handler, error) {
		return e.m.LimitBodyCountingTimeouts(e.name, int64(e.l.MaxMessageBytes), e.l.WriteTimeout, h), nil
	}, nil
}
