// Package plugin is the backend of the meshlens Grafana datasource: it turns
// Grafana's queries into calls of meshlens' REST API and the answers into
// data frames for Grafana's Node Graph, time series, logs, trace and table
// panels, alert rules and annotations.
package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/backend/instancemgmt"
	"github.com/grafana/grafana-plugin-sdk-go/data"
)

// ID is the plugin id of plugin.json.
const ID = "meshlens-datasource"

// DefaultTimeout bounds each call to meshlens unless the settings say otherwise.
const DefaultTimeout = 30 * time.Second

// Settings are the datasource's settings: the URL is Grafana's own field,
// jsonData holds the timeout, secureJsonData the token.
type Settings struct {
	URL            string `json:"-"`
	TimeoutSeconds int    `json:"timeoutSeconds"`
	Token          string `json:"-"`
}

// ParseSettings reads a datasource instance's settings.
func ParseSettings(s backend.DataSourceInstanceSettings) (Settings, error) {
	var out Settings
	if len(s.JSONData) > 0 {
		if err := json.Unmarshal(s.JSONData, &out); err != nil {
			return out, fmt.Errorf("datasource settings (jsonData): %w", err)
		}
	}
	if out.TimeoutSeconds < 0 || out.TimeoutSeconds > 600 {
		return out, fmt.Errorf("datasource settings: timeoutSeconds %d is not between 0 and 600", out.TimeoutSeconds)
	}
	out.URL = s.URL
	out.Token = s.DecryptedSecureJSONData["token"]
	return out, nil
}

// Datasource is one configured meshlens datasource.
type Datasource struct {
	uid    string
	client *Client
	// setupErr is a settings error, reported by every query and the health
	// check rather than refusing to create the instance: Grafana shows it.
	setupErr  error
	now       func() time.Time
	resources backend.CallResourceHandler
}

// NewDatasource is the instance factory that datasource.Manage calls.
func NewDatasource(_ context.Context, s backend.DataSourceInstanceSettings) (instancemgmt.Instance, error) {
	return newDatasource(s, time.Now), nil
}

func newDatasource(s backend.DataSourceInstanceSettings, now func() time.Time) *Datasource {
	d := &Datasource{uid: s.UID, now: now}
	d.resources = d.resourceHandler()
	cfg, err := ParseSettings(s)
	if err != nil {
		d.setupErr = err
		return d
	}
	timeout := DefaultTimeout
	if cfg.TimeoutSeconds > 0 {
		timeout = time.Duration(cfg.TimeoutSeconds) * time.Second
	}
	d.client, d.setupErr = NewClient(cfg.URL, cfg.Token, timeout)
	return d
}

// Dispose is called when the settings change; nothing is held open.
func (d *Datasource) Dispose() {}

// Query is the JSON model of a query (src/types.ts: MeshlensQuery).
type Query struct {
	QueryType string `json:"queryType"`
	// topology
	View   string `json:"view"`   // service, version, workload
	Source string `json:"source"` // "" (meshlens decides), live, clickhouse, prometheus
	// topology, series, logs, annotations
	Namespace string `json:"namespace"`
	// series, logs, annotations, trace search
	Service string `json:"service"`
	Version string `json:"version"`
	// series: rps, errorRate, p50, p90, p99 (empty: all)
	Metrics []string `json:"metrics"`
	// logs
	Code *int   `json:"code"`
	Path string `json:"path"`
	// logs, trace
	TraceID string `json:"traceId"`
	// trace search
	MinDurationMs float64 `json:"minDurationMs"`
	// logs, trace search
	Limit int `json:"limit"`
}

// Query types.
const (
	TypeTopology    = "topology"
	TypeSeries      = "series"
	TypeLogs        = "logs"
	TypeTrace       = "trace"
	TypeTraceSearch = "traceSearch"
	TypeAnnotations = "annotations"
)

// QueryData answers each query on its own: one failing query gives its own
// error frame and leaves the others alone.
func (d *Datasource) QueryData(ctx context.Context, req *backend.QueryDataRequest) (*backend.QueryDataResponse, error) {
	resp := backend.NewQueryDataResponse()
	for _, q := range req.Queries {
		resp.Responses[q.RefID] = d.query(ctx, q)
	}
	return resp, nil
}

func (d *Datasource) query(ctx context.Context, dq backend.DataQuery) backend.DataResponse {
	if d.setupErr != nil {
		return backend.ErrDataResponseWithSource(backend.StatusBadRequest, backend.ErrorSourceDownstream, d.setupErr.Error())
	}
	var q Query
	if len(dq.JSON) > 0 {
		if err := json.Unmarshal(dq.JSON, &q); err != nil {
			return backend.ErrDataResponseWithSource(backend.StatusBadRequest, backend.ErrorSourcePlugin, "the query is not meshlens' query JSON: "+err.Error())
		}
	}
	if dq.QueryType != "" {
		q.QueryType = dq.QueryType
	}
	var (
		frames data.Frames
		err    error
	)
	switch q.QueryType {
	case TypeTopology, "":
		frames, err = d.topology(ctx, q, dq.TimeRange)
	case TypeSeries:
		frames, err = d.series(ctx, q, dq.TimeRange)
	case TypeLogs:
		frames, err = d.logs(ctx, q, dq.TimeRange)
	case TypeTrace:
		frames, err = d.trace(ctx, q)
	case TypeTraceSearch:
		frames, err = d.traceSearch(ctx, q, dq.TimeRange)
	case TypeAnnotations:
		frames, err = d.annotations(ctx, q, dq.TimeRange)
	default:
		err = &QueryError{Message: fmt.Sprintf("unknown query type %q: want topology, series, logs, trace, traceSearch or annotations", q.QueryType)}
	}
	if err != nil {
		return errorResponse(err)
	}
	for _, f := range frames {
		f.RefID = dq.RefID
	}
	return backend.DataResponse{Frames: frames}
}

// QueryError is a query the plugin refuses before asking meshlens.
type QueryError struct{ Message string }

func (e *QueryError) Error() string { return e.Message }

// errorResponse turns an error into the error frame Grafana shows on the panel.
func errorResponse(err error) backend.DataResponse {
	var qe *QueryError
	var ae *APIError
	switch {
	case errors.As(err, &qe):
		return backend.ErrDataResponseWithSource(backend.StatusBadRequest, backend.ErrorSourcePlugin, qe.Message)
	case errors.As(err, &ae):
		status := backend.StatusBadGateway
		switch {
		case ae.Timeout:
			status = backend.StatusTimeout
		case ae.Status == http.StatusUnauthorized:
			status = backend.StatusUnauthorized
		case ae.Status == http.StatusForbidden:
			status = backend.StatusForbidden
		case ae.Status == http.StatusNotFound:
			status = backend.StatusNotFound
		case ae.Status == http.StatusBadRequest:
			status = backend.StatusBadRequest
		case ae.Status == http.StatusGatewayTimeout:
			status = backend.StatusTimeout
		}
		return backend.ErrDataResponseWithSource(status, backend.ErrorSourceDownstream, err.Error())
	default:
		return backend.ErrDataResponseWithSource(backend.StatusInternal, backend.ErrorSourcePlugin, err.Error())
	}
}
