package plugin

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"
)

// Trace search bounds: meshlens' own (query.DefaultTraceLimit, query.MaxTraceLimit).
const (
	DefaultTraceLimit = 20
	MaxTraceLimit     = 100
)

var traceIDRE = regexp.MustCompile(`^[0-9a-fA-F]{1,64}$`)

// trace reads one trace and gives the frame of Grafana's trace view: one
// row per span with the field names the view reads.
func (d *Datasource) trace(ctx context.Context, q Query) (data.Frames, error) {
	id := strings.TrimSpace(q.TraceID)
	if id == "" {
		return nil, &QueryError{Message: "a trace query needs a trace id"}
	}
	if !traceIDRE.MatchString(id) {
		return nil, &QueryError{Message: fmt.Sprintf("%q is not a trace id (1 to 64 hex digits)", id)}
	}
	var t apiTrace
	if err := d.client.Get(ctx, "/traces/"+url.PathEscape(id), nil, &t); err != nil {
		return nil, fmt.Errorf("trace %s: %w", id, err)
	}
	type kv struct {
		Key   string `json:"key"`
		Value any    `json:"value"`
	}
	var (
		traceID, spanID, parentID, opName, svcName, kind, status, statusMsg []string
		svcTags, tags                                                       []json.RawMessage
		start, dur                                                          []float64
	)
	var walk func(s *apiSpan)
	walk = func(s *apiSpan) {
		traceID = append(traceID, t.TraceID)
		spanID = append(spanID, s.SpanID)
		parentID = append(parentID, s.ParentSpanID)
		opName = append(opName, s.Name)
		name := s.Peer.Service
		if name == "" {
			name = "unknown"
		}
		svcName = append(svcName, name)
		st := []kv{}
		for _, p := range [][2]string{{"namespace", s.Peer.Namespace}, {"service.version", s.Peer.Version}, {"workload", s.Peer.Workload}} {
			if p[1] != "" {
				st = append(st, kv{p[0], p[1]})
			}
		}
		b, _ := json.Marshal(st) // plain strings always marshal
		svcTags = append(svcTags, b)
		keys := make([]string, 0, len(s.Attributes))
		for k := range s.Attributes {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		at := []kv{}
		for _, k := range keys {
			at = append(at, kv{k, s.Attributes[k]})
		}
		b, _ = json.Marshal(at)
		tags = append(tags, b)
		kind = append(kind, strings.ToLower(strings.TrimPrefix(s.Kind, "SPAN_KIND_")))
		status = append(status, s.StatusCode)
		statusMsg = append(statusMsg, s.StatusMessage)
		start = append(start, float64(s.Start.UnixNano())/1e6)
		dur = append(dur, s.DurationMs)
		for _, c := range s.Children {
			walk(c)
		}
	}
	for _, r := range t.Roots {
		walk(r)
	}
	f := data.NewFrame("trace",
		data.NewField("traceID", nil, traceID),
		data.NewField("spanID", nil, spanID),
		data.NewField("parentSpanID", nil, parentID),
		data.NewField("operationName", nil, opName),
		data.NewField("serviceName", nil, svcName),
		data.NewField("serviceTags", nil, svcTags),
		data.NewField("startTime", nil, start),
		data.NewField("duration", nil, dur),
		data.NewField("kind", nil, kind),
		data.NewField("statusCode", nil, status),
		data.NewField("statusMessage", nil, statusMsg),
		data.NewField("tags", nil, tags),
	)
	f.Meta = &data.FrameMeta{PreferredVisualization: data.VisTypeTrace}
	if t.Truncated {
		f.Meta.Notices = []data.Notice{{Severity: data.NoticeSeverityWarning, Text: fmt.Sprintf("the trace has more spans than meshlens returns; %d are shown", t.Spans)}}
	}
	return data.Frames{f}, nil
}

// traceSearch lists traces as a table whose trace ids link to the trace view.
func (d *Datasource) traceSearch(ctx context.Context, q Query, tr backend.TimeRange) (data.Frames, error) {
	w, err := windowOf(tr, d.now())
	if err != nil {
		return nil, err
	}
	limit, notices := capLimit(q.Limit, DefaultTraceLimit, MaxTraceLimit, "traces")
	p := url.Values{}
	if q.Service != "" {
		p.Set("service", q.Service)
	}
	if q.MinDurationMs > 0 {
		p.Set("minDurationMs", strconv.FormatFloat(q.MinDurationMs, 'f', -1, 64))
	}
	p.Set("since", w.since().Format(time.RFC3339))
	p.Set("until", w.end().Format(time.RFC3339))
	p.Set("limit", strconv.Itoa(limit))
	var res struct {
		Traces []apiTraceSummary `json:"traces"`
	}
	if err := d.client.Get(ctx, "/traces", p, &res); err != nil {
		return nil, fmt.Errorf("trace search: %w", err)
	}
	n := len(res.Traces)
	id, root, services := make([]string, n), make([]string, n), make([]string, n)
	start := make([]time.Time, n)
	dur := make([]float64, n)
	spans, errs := make([]uint64, n), make([]uint64, n)
	for i, t := range res.Traces {
		id[i], root[i], services[i] = t.TraceID, t.RootName, strings.Join(t.Services, ", ")
		start[i], dur[i], spans[i], errs[i] = t.Start.UTC(), t.DurationMs, t.Spans, t.Errors
	}
	link := data.DataLink{Title: "Trace ${__value.raw}", Internal: &data.InternalDataLink{DatasourceUID: d.uid,
		Query: map[string]any{"queryType": TypeTrace, "traceId": "${__value.raw}"}}}
	f := data.NewFrame("traces",
		data.NewField("traceId", nil, id).SetConfig(&data.FieldConfig{DisplayName: "Trace", Links: []data.DataLink{link}}),
		data.NewField("start", nil, start).SetConfig(&data.FieldConfig{DisplayName: "Start"}),
		data.NewField("durationMs", nil, dur).SetConfig(&data.FieldConfig{DisplayName: "Duration", Unit: "ms"}),
		data.NewField("rootName", nil, root).SetConfig(&data.FieldConfig{DisplayName: "Root span"}),
		data.NewField("services", nil, services).SetConfig(&data.FieldConfig{DisplayName: "Services"}),
		data.NewField("spans", nil, spans).SetConfig(&data.FieldConfig{DisplayName: "Spans"}),
		data.NewField("errors", nil, errs).SetConfig(&data.FieldConfig{DisplayName: "Errors"}),
	)
	f.Meta = &data.FrameMeta{PreferredVisualization: data.VisTypeTable, Notices: append(w.notices(), notices...)}
	return data.Frames{f}, nil
}
