package plugin

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"
)

// seriesMetric is one number of a series point.
type seriesMetric struct {
	name, display, unit string
	value               func(apiPoint) float64
}

var seriesMetrics = []seriesMetric{
	{"rps", "requests/s", "reqps", func(p apiPoint) float64 { return p.RPS }},
	{"errorRate", "error rate", "percentunit", func(p apiPoint) float64 { return p.ErrorRate }},
	{"p50", "p50", "ms", func(p apiPoint) float64 { return p.P50Ms }},
	{"p90", "p90", "ms", func(p apiPoint) float64 { return p.P90Ms }},
	{"p99", "p99", "ms", func(p apiPoint) float64 { return p.P99Ms }},
}

// series reads a service's per-version series and gives one frame per
// version and metric, a time field and a value field labelled namespace,
// service, version and metric: Grafana's time series panels and its alert
// rules (through this backend) read them as they are. meshlens picks the
// step (at most about 120 points) and with it the rollup tier that fits
// the range.
func (d *Datasource) series(ctx context.Context, q Query, tr backend.TimeRange) (data.Frames, error) {
	if q.Namespace == "" || q.Service == "" {
		return nil, &QueryError{Message: "a series query needs a namespace and a service"}
	}
	metrics, err := pickMetrics(q.Metrics)
	if err != nil {
		return nil, err
	}
	w, err := windowOf(tr, d.now())
	if err != nil {
		return nil, err
	}
	p := url.Values{}
	w.params(p, "range")
	if q.Source != "" {
		p.Set("source", q.Source)
	}
	var s apiSeries
	path := "/services/" + url.PathEscape(q.Namespace) + "/" + url.PathEscape(q.Service)
	if err := d.client.Get(ctx, path, p, &s); err != nil {
		return nil, fmt.Errorf("series of %s/%s: %w", q.Namespace, q.Service, err)
	}
	var frames data.Frames
	for _, v := range s.Versions {
		if q.Version != "" && v.Version != q.Version {
			continue
		}
		times := make([]time.Time, len(v.Points))
		for i, pt := range v.Points {
			times[i] = pt.T.UTC()
		}
		for _, m := range metrics {
			values := make([]float64, len(v.Points))
			for i, pt := range v.Points {
				values[i] = m.value(pt)
			}
			labels := data.Labels{"namespace": q.Namespace, "service": q.Service, "version": v.Version, "metric": m.name}
			display := fmt.Sprintf("%s %s %s", q.Service, versionName(v.Version), m.display)
			f := data.NewFrame(m.name,
				data.NewField("time", nil, times),
				data.NewField(m.name, labels, values).SetConfig(&data.FieldConfig{DisplayNameFromDS: display, Unit: m.unit}),
			)
			f.Meta = &data.FrameMeta{Type: data.FrameTypeTimeSeriesMulti, TypeVersion: data.FrameTypeVersion{0, 1}, Notices: w.notices(),
				Custom: map[string]any{"source": s.Source, "step": s.Step}}
			frames = append(frames, f)
		}
	}
	if len(frames) == 0 {
		what := q.Namespace + "/" + q.Service
		if q.Version != "" {
			what += " version " + q.Version
		}
		return nil, &APIError{Status: 404, Message: fmt.Sprintf("meshlens has no traffic to %s in this time range (%s source): check the namespace, service and version", what, s.Source)}
	}
	return frames, nil
}

func versionName(v string) string {
	if v == "" {
		return "(no version)"
	}
	return v
}

func pickMetrics(names []string) ([]seriesMetric, error) {
	if len(names) == 0 {
		return seriesMetrics, nil
	}
	var out []seriesMetric
	for _, n := range names {
		found := false
		for _, m := range seriesMetrics {
			if m.name == n {
				out, found = append(out, m), true
			}
		}
		if !found {
			return nil, &QueryError{Message: fmt.Sprintf("unknown metric %q: want rps, errorRate, p50, p90 or p99", n)}
		}
	}
	return out, nil
}
