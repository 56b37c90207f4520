package plugin

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"
)

// Log search bounds: meshlens' own (query.DefaultLogLimit, query.MaxLogLimit).
const (
	DefaultLogLimit = 100
	MaxLogLimit     = 1000
)

// logs searches meshlens' access logs with its filters and gives a frame
// in Grafana's logs format (timestamp, body, severity, id, labels).
func (d *Datasource) logs(ctx context.Context, q Query, tr backend.TimeRange) (data.Frames, error) {
	w, err := windowOf(tr, d.now())
	if err != nil {
		return nil, err
	}
	limit, notices := capLimit(q.Limit, DefaultLogLimit, MaxLogLimit, "log entries")
	p := url.Values{}
	for k, v := range map[string]string{"namespace": q.Namespace, "service": q.Service, "version": q.Version, "path": q.Path, "traceId": q.TraceID} {
		if v != "" {
			p.Set(k, v)
		}
	}
	if q.Code != nil {
		p.Set("code", strconv.Itoa(*q.Code))
	}
	p.Set("since", w.since().Format(time.RFC3339))
	p.Set("until", w.end().Format(time.RFC3339))
	p.Set("limit", strconv.Itoa(limit))
	var l apiLogs
	if err := d.client.Get(ctx, "/logs", p, &l); err != nil {
		return nil, fmt.Errorf("access logs: %w", err)
	}
	n := len(l.Entries)
	ts, body, severity, id, traceID := make([]time.Time, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	labels := make([]json.RawMessage, n)
	for i, e := range l.Entries {
		ts[i] = e.Time.UTC()
		body[i] = logLine(e)
		severity[i] = "info"
		if e.Code >= 500 || e.Code == 0 || (e.GRPCStatus != nil && *e.GRPCStatus > 0) {
			severity[i] = "error"
		} else if e.Code >= 400 {
			severity[i] = "warning"
		}
		id[i] = fmt.Sprintf("%d_%s_%s", e.Time.UnixNano(), e.TraceID, e.SpanID)
		traceID[i] = e.TraceID
		lb := map[string]string{
			"source_namespace": e.Source.Namespace, "source_service": e.Source.Service, "source_version": e.Source.Version,
			"destination_namespace": e.Destination.Namespace, "destination_service": e.Destination.Service, "destination_version": e.Destination.Version,
			"protocol": e.Protocol, "code": strconv.Itoa(e.Code), "origin": e.Origin,
		}
		for k, v := range lb {
			if v == "" {
				delete(lb, k)
			}
		}
		labels[i], _ = json.Marshal(lb) // a map of strings always marshals
	}
	f := data.NewFrame("logs",
		data.NewField("timestamp", nil, ts),
		data.NewField("body", nil, body),
		data.NewField("severity", nil, severity),
		data.NewField("id", nil, id),
		data.NewField("labels", nil, labels),
		data.NewField("traceId", nil, traceID),
	)
	f.Meta = &data.FrameMeta{Type: data.FrameTypeLogLines, TypeVersion: data.FrameTypeVersion{0, 0}, PreferredVisualization: data.VisTypeLogs,
		Notices: append(w.notices(), notices...)}
	if l.Cursor != "" {
		f.Meta.Notices = append(f.Meta.Notices, data.Notice{Severity: data.NoticeSeverityInfo,
			Text: fmt.Sprintf("the newest %d entries are shown; more match: narrow the filters or the time range", n)})
	}
	return data.Frames{f}, nil
}

// logLine is the line a user reads: method path code duration caller → callee.
func logLine(e apiLogEntry) string {
	var b strings.Builder
	if e.Method != "" {
		b.WriteString(e.Method + " ")
	}
	b.WriteString(e.Path)
	fmt.Fprintf(&b, " %d", e.Code)
	if e.GRPCStatus != nil && *e.GRPCStatus > 0 { // -1: not gRPC
		fmt.Fprintf(&b, " grpc-status=%d", *e.GRPCStatus)
	}
	if e.Flags != "" && e.Flags != "-" {
		b.WriteString(" flags=" + e.Flags)
	}
	fmt.Fprintf(&b, " %.1fms %s → %s", e.DurationMs, peerName(e.Source), peerName(e.Destination))
	return b.String()
}

func peerName(p apiPeer) string {
	name := p.Service
	if name == "" {
		name = p.Workload
	}
	if name == "" {
		return "unknown"
	}
	if p.Namespace != "" {
		name = p.Namespace + "/" + name
	}
	if p.Version != "" {
		name += " " + p.Version
	}
	return name
}

// capLimit applies a search's default and maximum, saying when it cut.
func capLimit(asked, def, max int, what string) (int, []data.Notice) {
	switch {
	case asked <= 0:
		return def, nil
	case asked > max:
		return max, []data.Notice{{Severity: data.NoticeSeverityWarning, Text: fmt.Sprintf("meshlens returns at most %d %s per query", max, what)}}
	default:
		return asked, nil
	}
}
