package query

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/meshlens/meshlens/mesh"
	"github.com/meshlens/meshlens/store"
)

// LogEntry is one access-log row.
type LogEntry struct {
	Time        time.Time `json:"time"`
	Source      mesh.Peer `json:"source"`
	Destination mesh.Peer `json:"destination"`
	Protocol    string    `json:"protocol"`
	Method      string    `json:"method"`
	Path        string    `json:"path"`
	Authority   string    `json:"authority"`
	Code        uint16    `json:"code"`
	GRPCStatus  int16     `json:"grpcStatus"`
	Flags       string    `json:"flags"`
	DurationMs  float64   `json:"durationMs"`
	BytesIn     uint64    `json:"bytesIn"`
	BytesOut    uint64    `json:"bytesOut"`
	MTLS        bool      `json:"mtls"`
	TraceID     string    `json:"traceId,omitempty"`
	SpanID      string    `json:"spanId,omitempty"`
	Origin      string    `json:"origin"`
}

// LogPage is a page of log entries, newest first. Cursor, when set, fetches
// the next (older) page.
type LogPage struct {
	Entries []LogEntry `json:"entries"`
	Cursor  string     `json:"cursor,omitempty"`
}

// rowHash orders rows with the same nanosecond so paging neither skips nor
// repeats them.
const rowHash = `cityHash64(trace_id, span_id, src_workload, dst_workload, path, method, toString(code))`

// Logs searches access logs, newest first.
func Logs(ctx context.Context, st *store.Store, p LogsParams) (LogPage, error) {
	conds := []string{
		fmt.Sprintf("time >= toDateTime(%d) AND time <= toDateTime(%d)", p.Since.Unix(), p.Until.Unix()),
		fmt.Sprintf("time_ns >= %d AND time_ns <= %d", p.Since.UnixNano(), p.Until.UnixNano()),
	}
	add := func(col, v string) {
		if v != "" {
			conds = append(conds, col+" = "+quote(v))
		}
	}
	add("dst_namespace", p.Namespace)
	add("dst_service", p.Service)
	add("dst_version", p.Version)
	add("trace_id", p.TraceID)
	if p.Code >= 0 {
		conds = append(conds, fmt.Sprintf("code = %d", p.Code))
	}
	if p.Path != "" {
		if p.PathPrefix {
			conds = append(conds, fmt.Sprintf("substring(path, 1, %d) = %s", len(p.Path), quote(p.Path)))
		} else {
			conds = append(conds, "path = "+quote(p.Path))
		}
	}
	if c := p.Cursor; c != nil {
		conds = append(conds, fmt.Sprintf("(time_ns < %d OR (time_ns = %d AND h < %d))", c.TimeNs, c.TimeNs, c.Hash))
	}
	q := `SELECT time_ns, src_namespace, src_service, src_workload, src_version,
  dst_namespace, dst_service, dst_workload, dst_version, protocol, method, path, authority,
  code, grpc_status, flags, duration_us, bytes_in, bytes_out, mtls, trace_id, span_id, origin, ` + rowHash + ` AS h
FROM ` + st.Table(store.TableAccessLogs) + `
WHERE ` + strings.Join(conds, " AND ") + `
ORDER BY time_ns DESC, h DESC
LIMIT ` + fmt.Sprint(p.Limit+1)
	rows, err := st.Conn().Query(ctx, q)
	if err != nil {
		return LogPage{}, fmt.Errorf("search access logs: %w", err)
	}
	defer rows.Close()
	page := LogPage{Entries: []LogEntry{}}
	var last Cursor
	for rows.Next() {
		var (
			e          LogEntry
			tns, durUs uint64
			mtls       uint8
			h          uint64
		)
		if err := rows.Scan(&tns, &e.Source.Namespace, &e.Source.Service, &e.Source.Workload, &e.Source.Version,
			&e.Destination.Namespace, &e.Destination.Service, &e.Destination.Workload, &e.Destination.Version,
			&e.Protocol, &e.Method, &e.Path, &e.Authority, &e.Code, &e.GRPCStatus, &e.Flags, &durUs,
			&e.BytesIn, &e.BytesOut, &mtls, &e.TraceID, &e.SpanID, &e.Origin, &h); err != nil {
			return LogPage{}, fmt.Errorf("search access logs: scan: %w", err)
		}
		if len(page.Entries) == p.Limit {
			page.Cursor = last.Encode()
			break
		}
		e.Time = time.Unix(0, int64(tns)).UTC()
		e.DurationMs = float64(durUs) / 1000
		e.MTLS = mtls == 1
		page.Entries = append(page.Entries, e)
		last = Cursor{TimeNs: tns, Hash: h}
	}
	if err := rows.Err(); err != nil {
		return LogPage{}, fmt.Errorf("search access logs: %w", err)
	}
	return page, nil
}
