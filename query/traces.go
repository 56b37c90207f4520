package query

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/meshlens/meshlens/mesh"
	"github.com/meshlens/meshlens/store"
)

// SpanNode is a span with its children: the trace as a tree.
type SpanNode struct {
	SpanID        string            `json:"spanId"`
	ParentSpanID  string            `json:"parentSpanId,omitempty"`
	Name          string            `json:"name"`
	Kind          string            `json:"kind"`
	Peer          mesh.Peer         `json:"peer"`
	Start         time.Time         `json:"start"`
	DurationMs    float64           `json:"durationMs"`
	StatusCode    string            `json:"statusCode"`
	StatusMessage string            `json:"statusMessage,omitempty"`
	Attributes    map[string]string `json:"attributes,omitempty"`
	Children      []*SpanNode       `json:"children"`
}

// Trace is a span tree. Roots are spans whose parent is not in the trace.
type Trace struct {
	TraceID   string      `json:"traceId"`
	Spans     int         `json:"spans"`
	Truncated bool        `json:"truncated,omitempty"`
	Roots     []*SpanNode `json:"roots"`
}

// ErrNotFound is returned for a trace with no spans.
var ErrNotFound = errors.New("not found")

// GetTrace reads a trace's spans (at most MaxSpans) and links them into a tree.
func GetTrace(ctx context.Context, st *store.Store, traceID string) (*Trace, error) {
	q := `SELECT start_ns, span_id, parent_span_id, name, kind, namespace, service, workload, version,
  duration_us, status_code, status_message, attr_keys, attr_values
FROM ` + st.Table(store.TableSpans) + `
WHERE trace_id = ` + quote(traceID) + `
ORDER BY start_ns
LIMIT ` + fmt.Sprint(MaxSpans+1)
	rows, err := st.Conn().Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("trace %s: %w", traceID, err)
	}
	defer rows.Close()
	tr := &Trace{TraceID: traceID, Roots: []*SpanNode{}}
	var all []*SpanNode
	for rows.Next() {
		if len(all) == MaxSpans {
			tr.Truncated = true
			break
		}
		var (
			s           SpanNode
			startNs, us uint64
			keys, vals  []string
		)
		if err := rows.Scan(&startNs, &s.SpanID, &s.ParentSpanID, &s.Name, &s.Kind, &s.Peer.Namespace, &s.Peer.Service,
			&s.Peer.Workload, &s.Peer.Version, &us, &s.StatusCode, &s.StatusMessage, &keys, &vals); err != nil {
			return nil, fmt.Errorf("trace %s: scan: %w", traceID, err)
		}
		s.Start, s.DurationMs, s.Children = time.Unix(0, int64(startNs)).UTC(), float64(us)/1000, []*SpanNode{}
		if len(keys) > 0 {
			s.Attributes = make(map[string]string, len(keys))
			for i, k := range keys {
				if i < len(vals) {
					s.Attributes[k] = vals[i]
				}
			}
		}
		all = append(all, &s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("trace %s: %w", traceID, err)
	}
	if len(all) == 0 {
		return nil, fmt.Errorf("trace %s: %w", traceID, ErrNotFound)
	}
	byID := make(map[string]*SpanNode, len(all))
	for _, s := range all {
		if _, dup := byID[s.SpanID]; !dup {
			byID[s.SpanID] = s
		}
	}
	for _, s := range all {
		if p := byID[s.ParentSpanID]; p != nil && p != s && s.ParentSpanID != "" {
			p.Children = append(p.Children, s)
		} else {
			tr.Roots = append(tr.Roots, s)
		}
	}
	tr.Spans = len(all)
	return tr, nil
}

// TraceSummary is one hit of a trace search.
type TraceSummary struct {
	TraceID    string    `json:"traceId"`
	Start      time.Time `json:"start"`
	DurationMs float64   `json:"durationMs"`
	Spans      uint64    `json:"spans"`
	Services   []string  `json:"services"`
	RootName   string    `json:"rootName"`
	Errors     uint64    `json:"errors"`
}

// SearchTraces finds traces with a span of the service (any, if empty) at
// least MinDuration long, newest first.
func SearchTraces(ctx context.Context, st *store.Store, p TraceSearchParams) ([]TraceSummary, error) {
	conds := []string{fmt.Sprintf("time >= toDateTime(%d) AND time <= toDateTime(%d)", p.Since.Unix(), p.Until.Unix())}
	inner := append([]string(nil), conds...)
	if p.Service != "" {
		inner = append(inner, "service = "+quote(p.Service))
	}
	if p.MinDuration > 0 {
		inner = append(inner, fmt.Sprintf("duration_us >= %d", p.MinDuration/time.Microsecond))
	}
	// On a cluster the query runs on every shard, and the subquery reads
	// the shard's own table: all spans of a trace are on one shard.
	q := `SELECT trace_id, min(start_ns) AS start, max(duration_us), count(), groupUniqArray(service),
  argMin(name, start_ns), countIf(status_code = 'error')
FROM ` + st.Table(store.TableSpans) + `
WHERE ` + strings.Join(conds, " AND ") + ` AND trace_id IN (SELECT trace_id FROM ` + st.LocalTable(store.TableSpans) + ` WHERE ` + strings.Join(inner, " AND ") + `)
GROUP BY trace_id
ORDER BY start DESC
LIMIT ` + fmt.Sprint(p.Limit)
	rows, err := st.Conn().Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("search traces: %w", err)
	}
	defer rows.Close()
	out := []TraceSummary{}
	for rows.Next() {
		var (
			s       TraceSummary
			startNs uint64
			us      uint64
		)
		if err := rows.Scan(&s.TraceID, &startNs, &us, &s.Spans, &s.Services, &s.RootName, &s.Errors); err != nil {
			return nil, fmt.Errorf("search traces: scan: %w", err)
		}
		s.Start, s.DurationMs = time.Unix(0, int64(startNs)).UTC(), float64(us)/1000
		sort.Strings(s.Services)
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("search traces: %w", err)
	}
	return out, nil
}
