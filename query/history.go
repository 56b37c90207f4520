package query

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/meshlens/meshlens/graph"
	"github.com/meshlens/meshlens/store"
)

// History answers graph and series queries for any past window from the
// ClickHouse edge rollups: edges_1h for the whole hours of long windows,
// edges_1m for the rest.
type History struct {
	st      *store.Store
	maxRows int
}

// NewHistory reads from st. maxRows bounds the rows one query returns (one
// row per edge and status code); 0 means 500,000.
func NewHistory(st *store.Store, maxRows int) *History {
	if maxRows <= 0 {
		maxRows = 500000
	}
	return &History{st: st, maxRows: maxRows}
}

// hourlyFrom is the shortest window worth reading from the hourly rollup.
const hourlyFrom = 3 * time.Hour

// rollupSource returns a FROM clause over the rollups covering the minute
// rows with t in [start, end): whole hours from edges_1h when the window is
// long, the ragged ends from edges_1m. where is applied in every branch.
func (h *History) rollupSource(start, end time.Time, where string) string {
	start, end = start.Truncate(time.Second), end.Truncate(time.Second)
	hs := start.Truncate(time.Hour)
	if hs.Before(start) {
		hs = hs.Add(time.Hour)
	}
	he := end.Truncate(time.Hour)
	cond := func(from, to time.Time) string {
		return fmt.Sprintf("t >= toDateTime(%d) AND t < toDateTime(%d)", from.Unix(), to.Unix())
	}
	if where != "" {
		where = " AND (" + where + ")"
	}
	if end.Sub(start) < hourlyFrom || !hs.Before(he) {
		return fmt.Sprintf("(SELECT * FROM %s WHERE %s%s)", h.st.Table(store.TableEdges1m), cond(start, end), where)
	}
	return fmt.Sprintf("(SELECT * FROM %s WHERE %s%s UNION ALL SELECT * FROM %s WHERE ((%s) OR (%s))%s)",
		h.st.Table(store.TableEdges1h), cond(hs, he), where,
		h.st.Table(store.TableEdges1m), cond(start, hs), cond(he, end), where)
}

// quote makes a ClickHouse string literal.
func quote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`)
	return "'" + r.Replace(s) + "'"
}

// Traffic sums every edge over [end-window, end) at minute grain.
func (h *History) Traffic(ctx context.Context, end time.Time, window time.Duration, namespace string) (*graph.Traffic, error) {
	where := ""
	if namespace != "" {
		where = fmt.Sprintf("src_namespace = %s OR dst_namespace = %s", quote(namespace), quote(namespace))
	}
	q := `SELECT src_namespace, src_service, src_workload, src_version,
  dst_namespace, dst_service, dst_workload, dst_version, protocol, code, grpc_status,
  countMerge(requests), sumMerge(mtls), sumMerge(bytes_in), sumMerge(bytes_out), sumMerge(duration_sum_us), sumForEachMerge(latency)
FROM ` + h.rollupSource(end.Add(-window), end, where) + `
GROUP BY src_namespace, src_service, src_workload, src_version,
  dst_namespace, dst_service, dst_workload, dst_version, protocol, code, grpc_status
LIMIT ` + fmt.Sprint(h.maxRows+1)
	rows, err := h.st.Conn().Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("history graph %v before %v: %w", window, end.UTC().Format(time.RFC3339), err)
	}
	defer rows.Close()
	t := graph.NewTraffic(end, window)
	n := 0
	for rows.Next() {
		if n++; n > h.maxRows {
			t.Partial = true
			break
		}
		var (
			k                               graph.EdgeKey
			code                            uint16
			grpcStatus                      int16
			reqs, mtls, bin, bout, durSumUs uint64
			lat                             []uint64
		)
		if err := rows.Scan(&k.Source.Namespace, &k.Source.Service, &k.Source.Workload, &k.Source.Version,
			&k.Destination.Namespace, &k.Destination.Service, &k.Destination.Workload, &k.Destination.Version,
			&k.Protocol, &code, &grpcStatus, &reqs, &mtls, &bin, &bout, &durSumUs, &lat); err != nil {
			return nil, fmt.Errorf("history graph: scan: %w", err)
		}
		st := t.Edge(k)
		st.AddCode(k.Protocol, graph.CodeKey{Code: code, GRPCStatus: grpcStatus}, reqs)
		st.MTLS += mtls
		st.BytesIn += bin
		st.BytesOut += bout
		st.DurationSumUs += durSumUs
		for i, c := range lat {
			if i < len(st.Latency) {
				st.Latency[i] += c
			}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("history graph: %w", err)
	}
	return t, nil
}

// ServiceSeries returns per-version series of a service's inbound traffic
// over [end-rng, end) with the given step (a whole number of minutes).
func (h *History) ServiceSeries(ctx context.Context, ns, service string, end time.Time, rng, step time.Duration) ([]graph.Series, error) {
	stepS := int64(step / time.Second)
	if stepS < 60 || stepS%60 != 0 {
		return nil, fmt.Errorf("history series: step %v is not whole minutes", step)
	}
	start := time.Unix(end.Add(-rng).Unix()/stepS*stepS, 0)
	n := int((end.Sub(start) + step - 1) / step)
	where := fmt.Sprintf("dst_namespace = %s AND dst_service = %s", quote(ns), quote(service))
	src := h.rollupSource(start, end, where)
	if step < time.Hour {
		// Hour rows cannot be split into smaller steps.
		src = fmt.Sprintf("(SELECT * FROM %s WHERE t >= toDateTime(%d) AND t < toDateTime(%d) AND %s)",
			h.st.Table(store.TableEdges1m), start.Unix(), end.Unix(), where)
	}
	q := fmt.Sprintf(`SELECT intDiv(toUInt32(t), %d) * %d AS ts, dst_version, protocol, code, grpc_status,
  countMerge(requests), sumForEachMerge(latency)
FROM %s
GROUP BY ts, dst_version, protocol, code, grpc_status
LIMIT %d`, stepS, stepS, src, h.maxRows)
	rows, err := h.st.Conn().Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("history series of %s/%s: %w", ns, service, err)
	}
	defer rows.Close()
	sb := graph.NewSeriesBuilder(start, step, n)
	for rows.Next() {
		var (
			ts                uint64
			version, protocol string
			code              uint16
			grpcStatus        int16
			reqs              uint64
			lat               []uint64
		)
		if err := rows.Scan(&ts, &version, &protocol, &code, &grpcStatus, &reqs, &lat); err != nil {
			return nil, fmt.Errorf("history series of %s/%s: scan: %w", ns, service, err)
		}
		st := sb.At(version, time.Unix(int64(ts), 0))
		if st == nil {
			continue
		}
		st.AddCode(protocol, graph.CodeKey{Code: code, GRPCStatus: grpcStatus}, reqs)
		for i, c := range lat {
			if i < len(st.Latency) {
				st.Latency[i] += c
			}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("history series of %s/%s: %w", ns, service, err)
	}
	return sb.Series(), nil
}
