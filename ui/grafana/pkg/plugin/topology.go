package plugin

import (
	"context"
	"fmt"
	"net/url"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"
)

// topology reads meshlens' graph and gives Grafana's Node Graph its two
// frames, "nodes" and "edges", with the field names the panel reads.
func (d *Datasource) topology(ctx context.Context, q Query, tr backend.TimeRange) (data.Frames, error) {
	w, err := windowOf(tr, d.now())
	if err != nil {
		return nil, err
	}
	p := url.Values{}
	w.params(p, "window")
	switch q.View {
	case "", "service", "version", "workload":
		if q.View != "" {
			p.Set("view", q.View)
		}
	default:
		return nil, &QueryError{Message: fmt.Sprintf("unknown view %q: want service, version or workload", q.View)}
	}
	if q.Namespace != "" {
		p.Set("namespace", q.Namespace)
	}
	if q.Source != "" {
		p.Set("source", q.Source)
	}
	var g apiGraph
	if err := d.client.Get(ctx, "/graph", p, &g); err != nil {
		return nil, fmt.Errorf("topology: %w", err)
	}
	return topologyFrames(g, w), nil
}

func topologyFrames(g apiGraph, w window) data.Frames {
	n := len(g.Nodes)
	var (
		id, title, subtitle, health, namespace, workload = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		rps, errRate, success, failed                    = make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n)
		requests                                         = make([]uint64, n)
	)
	for i, nd := range g.Nodes {
		id[i] = nd.ID
		title[i] = nd.Service
		if title[i] == "" {
			title[i] = nd.Workload
		}
		if nd.Unknown {
			title[i] = "unknown"
		}
		switch g.View {
		case "version":
			subtitle[i] = nd.Version
			if subtitle[i] == "" {
				subtitle[i] = nd.Namespace
			}
		case "workload":
			subtitle[i] = nd.Workload
		default:
			subtitle[i] = nd.Namespace
		}
		rps[i], errRate[i], requests[i] = nd.RPS, nd.ErrorRate, nd.Requests
		health[i], namespace[i], workload[i] = nd.Health, nd.Namespace, nd.Workload
		// The arc is the share of inbound requests that succeeded and failed;
		// a node nobody calls (a caller at the edge of the mesh) has none.
		if nd.Requests > 0 {
			failed[i] = nd.ErrorRate
			success[i] = 1 - nd.ErrorRate
		}
	}
	nodes := data.NewFrame("nodes",
		data.NewField("id", nil, id),
		data.NewField("title", nil, title),
		data.NewField("subtitle", nil, subtitle),
		data.NewField("mainstat", nil, rps).SetConfig(&data.FieldConfig{DisplayName: "Requests/s", Unit: "reqps", Decimals: ptr[uint16](2)}),
		data.NewField("secondarystat", nil, errRate).SetConfig(&data.FieldConfig{DisplayName: "Error rate", Unit: "percentunit", Decimals: ptr[uint16](2)}),
		data.NewField("arc__success", nil, success).SetConfig(&data.FieldConfig{DisplayName: "Success", Color: map[string]any{"mode": "fixed", "fixedColor": "green"}}),
		data.NewField("arc__failed", nil, failed).SetConfig(&data.FieldConfig{DisplayName: "Failed", Color: map[string]any{"mode": "fixed", "fixedColor": "red"}}),
		data.NewField("detail__namespace", nil, namespace).SetConfig(&data.FieldConfig{DisplayName: "Namespace"}),
		data.NewField("detail__workload", nil, workload).SetConfig(&data.FieldConfig{DisplayName: "Workload"}),
		data.NewField("detail__health", nil, health).SetConfig(&data.FieldConfig{DisplayName: "Health"}),
		data.NewField("detail__requests", nil, requests).SetConfig(&data.FieldConfig{DisplayName: "Requests in range"}),
	)
	m := len(g.Edges)
	var (
		eid, src, dst, proto             = make([]string, m), make([]string, m), make([]string, m), make([]string, m)
		erps, erate, p50, p90, p99, mtls = make([]float64, m), make([]float64, m), make([]float64, m), make([]float64, m), make([]float64, m), make([]float64, m)
		ereq                             = make([]uint64, m)
	)
	for i, e := range g.Edges {
		eid[i] = e.Source + "->" + e.Target
		src[i], dst[i], proto[i] = e.Source, e.Target, e.Protocol
		erps[i], erate[i], p50[i], p90[i], p99[i], mtls[i], ereq[i] = e.RPS, e.ErrorRate, e.P50Ms, e.P90Ms, e.P99Ms, e.MTLS, e.Requests
	}
	edges := data.NewFrame("edges",
		data.NewField("id", nil, eid),
		data.NewField("source", nil, src),
		data.NewField("target", nil, dst),
		data.NewField("mainstat", nil, erps).SetConfig(&data.FieldConfig{DisplayName: "Requests/s", Unit: "reqps", Decimals: ptr[uint16](2)}),
		data.NewField("secondarystat", nil, p99).SetConfig(&data.FieldConfig{DisplayName: "p99", Unit: "ms", Decimals: ptr[uint16](1)}),
		data.NewField("detail__errorRate", nil, erate).SetConfig(&data.FieldConfig{DisplayName: "Error rate", Unit: "percentunit"}),
		data.NewField("detail__p50", nil, p50).SetConfig(&data.FieldConfig{DisplayName: "p50", Unit: "ms"}),
		data.NewField("detail__p90", nil, p90).SetConfig(&data.FieldConfig{DisplayName: "p90", Unit: "ms"}),
		data.NewField("detail__requests", nil, ereq).SetConfig(&data.FieldConfig{DisplayName: "Requests in range"}),
		data.NewField("detail__protocol", nil, proto).SetConfig(&data.FieldConfig{DisplayName: "Protocol"}),
		data.NewField("detail__mtls", nil, mtls).SetConfig(&data.FieldConfig{DisplayName: "mTLS share", Unit: "percentunit"}),
	)
	meta := func() *data.FrameMeta {
		m := &data.FrameMeta{PreferredVisualization: data.VisTypeNodeGraph, Notices: w.notices(),
			Custom: map[string]any{"source": g.Source, "view": g.View, "window": g.Window}}
		if g.Truncated {
			m.Notices = append(m.Notices, data.Notice{Severity: data.NoticeSeverityWarning, Text: "meshlens capped the graph (5,000 nodes, 20,000 edges): the quietest parts are left out; filter by namespace"})
		}
		if g.Partial {
			m.Notices = append(m.Notices, data.Notice{Severity: data.NoticeSeverityWarning, Text: "the source returned incomplete data (row or series caps)"})
		}
		return m
	}
	nodes.Meta, edges.Meta = meta(), meta()
	return data.Frames{nodes, edges}
}

func ptr[T any](v T) *T { return &v }
