package store

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/meshlens/meshlens/mesh"
)

// Span is one row of the spans table.
type Span struct {
	Start         time.Time
	TraceID       string
	SpanID        string
	ParentSpanID  string
	Name          string
	Kind          string // "server", "client", "internal", "producer", "consumer"
	Peer          mesh.Peer
	Duration      time.Duration
	StatusCode    string // "unset", "ok", "error"
	StatusMessage string
	AttrKeys      []string
	AttrValues    []string
}

// MetricPoint is one row of the metric_points table. Histograms carry Count,
// Sum and explicit buckets; gauges and sums carry Value.
type MetricPoint struct {
	Time         time.Time
	Name         string
	Type         string // "gauge", "sum", "histogram", "summary"
	Unit         string
	Peer         mesh.Peer
	Value        float64
	Count        uint64
	Sum          float64
	Bounds       []float64
	BucketCounts []uint64
	AttrKeys     []string
	AttrValues   []string
}

// LogRow is one row of the logs table: an OTLP log record that is not an
// access-log entry.
type LogRow struct {
	Time       time.Time
	Severity   string
	Body       string
	Peer       mesh.Peer
	TraceID    string
	SpanID     string
	AttrKeys   []string
	AttrValues []string
}

// InsertLogs writes log rows in one batch.
func (s *Store) InsertLogs(ctx context.Context, logs []LogRow) error {
	return s.InsertLogsTagged(ctx, logs, nil)
}

// InsertLogsTagged is InsertLogs with a batch id per row (see LandedBatches).
func (s *Store) InsertLogsTagged(ctx context.Context, logs []LogRow, batch []uint64) error {
	if len(logs) == 0 {
		return nil
	}
	n := len(logs)
	var (
		tm                     = make([]time.Time, n)
		tns                    = make([]uint64, n)
		sev, body, trace, span = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		ns, svc, wl, ver       = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		keys, vals             = make([][]string, n), make([][]string, n)
	)
	for i := range logs {
		l := &logs[i]
		tm[i], tns[i] = l.Time, uint64(l.Time.UnixNano())
		sev[i], body[i], trace[i], span[i] = l.Severity, l.Body, l.TraceID, l.SpanID
		ns[i], svc[i], wl[i], ver[i] = l.Peer.Namespace, l.Peer.Service, l.Peer.Workload, l.Peer.Version
		keys[i], vals[i] = nonNil(l.AttrKeys), nonNil(l.AttrValues)
	}
	return s.insertColumns(ctx, TableLogs, []string{
		"time", "time_ns", "severity", "body", "namespace", "service", "workload", "version",
		"trace_id", "span_id", "attr_keys", "attr_values", "batch",
	}, []any{tm, tns, sev, body, ns, svc, wl, ver, trace, span, keys, vals, batchColumn(batch, n)})
}

// InsertRecords writes mesh request records in one batch. Columns are named
// in the INSERT, as ClickHouse 18.16 requires, and appended column-wise,
// which is several times cheaper than row-wise appends.
func (s *Store) InsertRecords(ctx context.Context, recs []mesh.Record) error {
	return s.InsertRecordsTagged(ctx, recs, nil)
}

// InsertRecordsTagged is InsertRecords with a batch id per row (see
// LandedBatches).
func (s *Store) InsertRecordsTagged(ctx context.Context, recs []mesh.Record, batch []uint64) error {
	if len(recs) == 0 {
		return nil
	}
	n := len(recs)
	var (
		tm                                      = make([]time.Time, n)
		tns, dur, bin, bout                     = make([]uint64, n), make([]uint64, n), make([]uint64, n), make([]uint64, n)
		sns, ssvc, swl, sver                    = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		dns, dsvc, dwl, dver                    = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		proto, method, path, auth, flags, trace = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		span, origin                            = make([]string, n), make([]string, n)
		code                                    = make([]uint16, n)
		grpcStatus                              = make([]int16, n)
		mtls                                    = make([]uint8, n)
	)
	for i := range recs {
		r := &recs[i]
		src, dst := r.Source.OrUnknown(), r.Destination.OrUnknown()
		tm[i], tns[i] = r.Time, uint64(r.Time.UnixNano())
		sns[i], ssvc[i], swl[i], sver[i] = src.Namespace, src.Service, src.Workload, src.Version
		dns[i], dsvc[i], dwl[i], dver[i] = dst.Namespace, dst.Service, dst.Workload, dst.Version
		proto[i], method[i], path[i], auth[i] = r.Protocol, r.Method, r.Path, r.Authority
		code[i], grpcStatus[i], flags[i] = r.Code, r.GRPCStatus, r.Flags
		dur[i], bin[i], bout[i] = uint64(r.Duration/time.Microsecond), r.BytesIn, r.BytesOut
		if r.MTLS {
			mtls[i] = 1
		}
		trace[i], span[i], origin[i] = r.TraceID, r.SpanID, string(r.Origin)
	}
	return s.insertColumns(ctx, TableAccessLogs, []string{
		"time", "time_ns",
		"src_namespace", "src_service", "src_workload", "src_version",
		"dst_namespace", "dst_service", "dst_workload", "dst_version",
		"protocol", "method", "path", "authority", "code", "grpc_status", "flags",
		"duration_us", "bytes_in", "bytes_out", "mtls", "trace_id", "span_id", "origin", "batch",
	}, []any{
		tm, tns, sns, ssvc, swl, sver, dns, dsvc, dwl, dver,
		proto, method, path, auth, code, grpcStatus, flags,
		dur, bin, bout, mtls, trace, span, origin, batchColumn(batch, n),
	})
}

// InsertSpans writes spans in one batch.
func (s *Store) InsertSpans(ctx context.Context, spans []Span) error {
	return s.InsertSpansTagged(ctx, spans, nil)
}

// InsertSpansTagged is InsertSpans with a batch id per row (see LandedBatches).
func (s *Store) InsertSpansTagged(ctx context.Context, spans []Span, batch []uint64) error {
	if len(spans) == 0 {
		return nil
	}
	n := len(spans)
	var (
		tm                                  = make([]time.Time, n)
		start, dur                          = make([]uint64, n), make([]uint64, n)
		trace, id, parent, name, kind       = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		ns, svc, wl, ver, status, statusMsg = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		keys, vals                          = make([][]string, n), make([][]string, n)
	)
	for i := range spans {
		sp := &spans[i]
		tm[i], start[i], dur[i] = sp.Start, uint64(sp.Start.UnixNano()), uint64(sp.Duration/time.Microsecond)
		trace[i], id[i], parent[i], name[i], kind[i] = sp.TraceID, sp.SpanID, sp.ParentSpanID, sp.Name, sp.Kind
		ns[i], svc[i], wl[i], ver[i] = sp.Peer.Namespace, sp.Peer.Service, sp.Peer.Workload, sp.Peer.Version
		status[i], statusMsg[i] = sp.StatusCode, sp.StatusMessage
		keys[i], vals[i] = nonNil(sp.AttrKeys), nonNil(sp.AttrValues)
	}
	return s.insertColumns(ctx, TableSpans, []string{
		"time", "start_ns", "trace_id", "span_id", "parent_span_id", "name", "kind",
		"namespace", "service", "workload", "version", "duration_us", "status_code", "status_message",
		"attr_keys", "attr_values", "batch",
	}, []any{tm, start, trace, id, parent, name, kind, ns, svc, wl, ver, dur, status, statusMsg, keys, vals, batchColumn(batch, n)})
}

// InsertMetricPoints writes metric data points in one batch.
func (s *Store) InsertMetricPoints(ctx context.Context, pts []MetricPoint) error {
	return s.InsertMetricPointsTagged(ctx, pts, nil)
}

// InsertMetricPointsTagged is InsertMetricPoints with a batch id per row (see
// LandedBatches).
func (s *Store) InsertMetricPointsTagged(ctx context.Context, pts []MetricPoint, batch []uint64) error {
	if len(pts) == 0 {
		return nil
	}
	n := len(pts)
	var (
		tm              = make([]time.Time, n)
		tns, count      = make([]uint64, n), make([]uint64, n)
		name, typ, unit = make([]string, n), make([]string, n), make([]string, n)
		ns, svc, ver    = make([]string, n), make([]string, n), make([]string, n)
		value, sum      = make([]float64, n), make([]float64, n)
		bounds          = make([][]float64, n)
		buckets         = make([][]uint64, n)
		keys, vals      = make([][]string, n), make([][]string, n)
	)
	for i := range pts {
		p := &pts[i]
		tm[i], tns[i] = p.Time, uint64(p.Time.UnixNano())
		name[i], typ[i], unit[i] = p.Name, p.Type, p.Unit
		ns[i], svc[i], ver[i] = p.Peer.Namespace, p.Peer.Service, p.Peer.Version
		value[i], count[i], sum[i] = p.Value, p.Count, p.Sum
		bounds[i], buckets[i] = p.Bounds, p.BucketCounts
		if bounds[i] == nil {
			bounds[i] = []float64{}
		}
		if buckets[i] == nil {
			buckets[i] = []uint64{}
		}
		keys[i], vals[i] = nonNil(p.AttrKeys), nonNil(p.AttrValues)
	}
	return s.insertColumns(ctx, TableMetricPoints, []string{
		"time", "time_ns", "name", "type", "unit", "namespace", "service", "version",
		"value", "count", "sum", "bounds", "bucket_counts", "attr_keys", "attr_values", "batch",
	}, []any{tm, tns, name, typ, unit, ns, svc, ver, value, count, sum, bounds, buckets, keys, vals, batchColumn(batch, n)})
}

// batchColumn returns the batch ids, or zeros when the rows are untagged.
func batchColumn(batch []uint64, n int) []uint64 {
	if len(batch) == n {
		return batch
	}
	return make([]uint64, n)
}

// LandedBatches returns which of the batch ids have rows in table. The writer
// asks after a failed insert whose outcome is unknown (the connection broke
// after the data was sent), so that a retry writes nothing twice.
//
// On a cluster it answers none: a failed write may have landed on some
// shards and not on others, so a batch id found does not mean all its rows
// are there. The retry sends the same rows again instead; each shard's
// replicated table recognises the blocks it already has (insert
// deduplication, by checksum, over its last 100 blocks) and keeps one copy.
func (s *Store) LandedBatches(ctx context.Context, table string, ids []uint64) (map[uint64]bool, error) {
	landed := map[uint64]bool{}
	if len(ids) == 0 || s.cluster != "" {
		return landed, nil
	}
	list := make([]string, len(ids))
	for i, id := range ids {
		list[i] = strconv.FormatUint(id, 10)
	}
	rows, err := s.conn.Query(ctx, fmt.Sprintf("SELECT DISTINCT batch FROM %s WHERE batch IN (%s)", s.Table(table), strings.Join(list, ",")))
	if err != nil {
		return nil, fmt.Errorf("landed batches in %s: %w", table, err)
	}
	defer rows.Close()
	for rows.Next() {
		var id uint64
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("landed batches in %s: %w", table, err)
		}
		landed[id] = true
	}
	return landed, rows.Err()
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// insertColumns sends one batch of whole columns, and notes whether the
// table's writes succeed (WriteFailure).
func (s *Store) insertColumns(ctx context.Context, table string, names []string, cols []any) error {
	err := s.sendColumns(ctx, table, names, cols)
	s.noteWrite(table, err)
	return err
}

func (s *Store) sendColumns(ctx context.Context, table string, names []string, cols []any) error {
	into := s.Table(table)
	if s.cluster != "" && table == TableAccessLogs {
		into = s.Table(recordsIngest) // see schema.go
	}
	q := fmt.Sprintf("INSERT INTO %s (%s)", into, strings.Join(names, ", "))
	batch, err := s.conn.PrepareBatch(ctx, q)
	if err != nil {
		return fmt.Errorf("insert into %s: prepare: %w", table, err)
	}
	if err := appendColumns(batch, names, cols); err != nil {
		_ = batch.Abort()
		// The rows do not fit the table's columns as the server declares
		// them (a value an Enum lacks, say): sending again cannot help.
		return fmt.Errorf("insert into %s: %w", table, &rejectedError{err})
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("insert into %s: send %d rows: %w", table, batch.Rows(), err)
	}
	return nil
}

func appendColumns(batch driver.Batch, names []string, cols []any) error {
	for i, col := range cols {
		if err := batch.Column(i).Append(col); err != nil {
			return fmt.Errorf("column %s: %w", names[i], err)
		}
	}
	return nil
}

// rejectedError is rows the client could not encode for the table: the data,
// not the server's state, is at fault (IsUnavailable is false).
type rejectedError struct{ err error }

func (e *rejectedError) Error() string { return e.err.Error() }
func (e *rejectedError) Unwrap() error { return e.err }
