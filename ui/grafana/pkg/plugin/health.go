package plugin

import (
	"context"
	"fmt"
	"net/url"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
)

// CheckHealth runs a real graph query (the last 15 minutes, live) and says
// what is wrong: settings, unreachable, the token refused, or no traffic yet.
func (d *Datasource) CheckHealth(ctx context.Context, _ *backend.CheckHealthRequest) (*backend.CheckHealthResult, error) {
	if d.setupErr != nil {
		return &backend.CheckHealthResult{Status: backend.HealthStatusError, Message: d.setupErr.Error()}, nil
	}
	var g apiGraph
	if err := d.client.Get(ctx, "/graph", url.Values{"window": {"15m"}}, &g); err != nil {
		return &backend.CheckHealthResult{Status: backend.HealthStatusError, Message: err.Error()}, nil
	}
	if len(g.Edges) == 0 {
		return &backend.CheckHealthResult{Status: backend.HealthStatusOk,
			Message: fmt.Sprintf("Connected to meshlens at %s, but it has seen no traffic in the last 15 minutes (no data yet): send it telemetry (OTLP, Envoy access logs)", d.client.base)}, nil
	}
	return &backend.CheckHealthResult{Status: backend.HealthStatusOk,
		Message: fmt.Sprintf("Connected to meshlens at %s: %d services and versions, %d edges in the last 15 minutes", d.client.base, len(g.Nodes), len(g.Edges))}, nil
}
