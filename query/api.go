// Package query is meshlens' HTTP API on echo: the dependency graph now (the
// live graph), at any past window (ClickHouse rollups) or from Istio metrics
// in Prometheus; services with per-version series; access-log search; trace
// lookup and search. Every route answers JSON, bounded in size, and a bad
// parameter gets 400 with {"error": ..., "parameter": ...}.
package query

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/meshlens/meshlens/graph"
	"github.com/meshlens/meshlens/internal/recycle"
	"github.com/meshlens/meshlens/store"
)

// Deps are what the API reads from. Live is required; Store and Prometheus
// may be nil, and the routes that need them then answer 503 or 400.
type Deps struct {
	Live       *graph.Live
	Store      *store.Store
	Prometheus *Prometheus // from --prometheus; nil when not configured
	Logger     *slog.Logger
	Now        func() time.Time // default time.Now
	// MaxNodes and MaxEdges bound a graph response; 0 means 5,000 and 20,000.
	MaxNodes, MaxEdges int
	// Timeout bounds one request's reads; 0 means 30 s.
	Timeout time.Duration
	// Replicas, when set, is the live graph of every meshlens replica
	// (package replicas): live reads answer for all of them.
	Replicas Replicas
	// Registry, when set, gives the graph's nodes their Pods' Kubernetes
	// labels (nodeLabels), for grouping by any label.
	Registry RegistrySnapshot
}

// Replicas is the live graph of several meshlens replicas added up; a
// replica that does not answer is named in the missing list.
type Replicas interface {
	TrafficAt(ctx context.Context, end time.Time, window time.Duration) (*graph.Traffic, []graph.MissingReplica, error)
	VersionSum(ctx context.Context, ns, service, version string, window time.Duration) (graph.VersionSum, []graph.MissingReplica, error)
	ServiceSeries(ctx context.Context, ns, service string, end time.Time, rng time.Duration, maxPoints int) ([]graph.Series, time.Duration, []graph.MissingReplica, error)
}

type handlers struct {
	Deps
	history  *History
	jsonBufs recycle.List[*[]byte] // graph answers' buffers (writeGraph)
}

// RegisterRoutes adds the query routes to g, the /api/v1 group.
func RegisterRoutes(g *echo.Group, deps Deps) {
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Timeout <= 0 {
		deps.Timeout = 30 * time.Second
	}
	a := &handlers{Deps: deps}
	if deps.Store != nil {
		a.history = NewHistory(deps.Store, 0)
	}
	g.GET("/graph", a.getGraph)
	g.GET("/graph/nodes/:id/impact", a.getImpact)
	g.GET("/graph/paths", a.getPath)
	g.GET("/graph/diff", a.getGraphDiff)
	g.GET("/services", a.getServices)
	g.GET("/services/:ns/:name", a.getService)
	g.GET("/services/:ns/:name/versions/:version/stats", a.getVersionStats)
	g.GET("/logs", a.getLogs)
	g.GET("/traces", a.searchTraces)
	g.GET("/traces/:traceId", a.getTrace)
}

// apiError is the JSON body of every error.
type apiError struct {
	Error     string `json:"error"`
	Parameter string `json:"parameter,omitempty"`
}

func (a *handlers) fail(c echo.Context, err error) error {
	var pe *ParamError
	switch {
	case errors.As(err, &pe):
		return c.JSON(http.StatusBadRequest, apiError{Error: pe.Message, Parameter: pe.Parameter})
	case errors.Is(err, graph.ErrWindow):
		return c.JSON(http.StatusBadRequest, apiError{Error: err.Error(), Parameter: "window"})
	case errors.Is(err, graph.ErrNoNode), errors.Is(err, ErrNotFound), errors.Is(err, errNoData):
		return c.JSON(http.StatusNotFound, apiError{Error: err.Error()})
	case errors.Is(err, errUnavailable):
		return c.JSON(http.StatusServiceUnavailable, apiError{Error: err.Error()})
	case errors.Is(err, context.DeadlineExceeded):
		return c.JSON(http.StatusGatewayTimeout, apiError{Error: err.Error()})
	default:
		a.Logger.Warn("query failed", "path", c.Request().URL.Path, "err", err)
		return c.JSON(http.StatusBadGateway, apiError{Error: err.Error()})
	}
}

var errUnavailable = errors.New("unavailable")

func (a *handlers) ctx(c echo.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.Request().Context(), a.Timeout)
}

// traffic gets the traffic of a window from the chosen source, and the
// replicas a live read of all of them left out.
func (a *handlers) traffic(ctx context.Context, p GraphParams) (*graph.Traffic, []graph.MissingReplica, error) {
	if p.Source == SourceLive && a.Replicas != nil {
		t, missing, err := a.Replicas.TrafficAt(ctx, a.Now(), p.Window)
		if err != nil {
			return nil, nil, err
		}
		return graph.Listed(t), missing, nil
	}
	t, err := a.sourceTraffic(ctx, p)
	return t, nil, err
}

func (a *handlers) sourceTraffic(ctx context.Context, p GraphParams) (*graph.Traffic, error) {
	switch p.Source {
	case SourceClickHouse:
		if a.history == nil {
			return nil, badParam("source", "no ClickHouse is configured")
		}
		return a.history.Traffic(ctx, p.End, p.Window, p.Namespace)
	case SourcePrometheus:
		if a.Prometheus == nil {
			return nil, badParam("source", "no Prometheus is configured (start meshlens with --prometheus URL)")
		}
		return a.Prometheus.Traffic(ctx, p.End, p.Window, p.Namespace)
	default:
		return a.Live.Traffic(p.Window)
	}
}

func (a *handlers) graphFor(c echo.Context) (*graph.Graph, GraphParams, error) {
	p, opts, err := a.graphParams(c)
	if err != nil {
		return nil, p, err
	}
	if a.sharedGraph(p) {
		// Shared with every reader of the same snapshot and window.
		g, err := a.Live.Graph(p.Window, opts)
		return g, p, err
	}
	g, _, err := a.buildGraph(c, p, opts)
	return g, p, err
}

func (a *handlers) graphParams(c echo.Context) (GraphParams, graph.Options, error) {
	p, err := ParseGraphParams(c.QueryParams(), a.Now(), a.Live.MaxWindow())
	opts := graph.Options{View: p.View, Namespace: p.Namespace, MaxNodes: a.MaxNodes, MaxEdges: a.MaxEdges, Source: p.Source, Now: a.Now()}
	return p, opts, err
}

// buildGraph builds the graph of a request alone (merged across replicas,
// or from history) and returns the traffic it is built from.
func (a *handlers) buildGraph(c echo.Context, p GraphParams, opts graph.Options) (*graph.Graph, *graph.Traffic, error) {
	ctx, cancel := a.ctx(c)
	defer cancel()
	if p.Source == SourceLive {
		t, missing, err := a.Replicas.TrafficAt(ctx, opts.Now, p.Window)
		if err != nil {
			return nil, nil, err
		}
		g := graph.Build(t, opts)
		g.Missing = missing
		return g, t, nil
	}
	t, err := a.sourceTraffic(ctx, p)
	if err != nil {
		return nil, nil, err
	}
	return graph.Build(t, opts), t, nil
}

// getGraph answers the graph and then gives its memory back for the next
// query's (graph.Graph.Release, graph.Snapshot.UseGraph): a cold
// 10,000-edge graph is ~10 MB.
func (a *handlers) getGraph(c echo.Context) error {
	p, opts, err := a.graphParams(c)
	if err != nil {
		return a.fail(c, err)
	}
	if a.sharedGraph(p) {
		var used bool
		err := a.Live.UseGraph(p.Window, opts, func(g *graph.Graph) error {
			used = true
			return a.writeGraph(c, g, true)
		})
		if err != nil && !used {
			return a.fail(c, err)
		}
		return err
	}
	g, t, err := a.buildGraph(c, p, opts)
	if err != nil {
		return a.fail(c, err)
	}
	defer t.Release() // after the graph: its edges' stats are the traffic's
	defer g.Release()
	return a.writeGraph(c, g, false)
}

// sharedGraph says whether graphFor answers p with a graph shared by every
// reader of the live graph's snapshot (one replica's own live graph), not
// one built for the request alone.
func (a *handlers) sharedGraph(p GraphParams) bool {
	return p.Source == SourceLive && a.Replicas == nil
}

func pathParam(c echo.Context, name string) string {
	v := c.Param(name)
	if u, err := url.PathUnescape(v); err == nil {
		return u
	}
	return v
}

func (a *handlers) getImpact(c echo.Context) error {
	g, _, err := a.graphFor(c)
	if err != nil {
		return a.fail(c, err)
	}
	imp, err := g.Impact(pathParam(c, "id"))
	if err != nil {
		return a.fail(c, err)
	}
	return c.JSON(http.StatusOK, imp)
}

func (a *handlers) getPath(c echo.Context) error {
	from, to := c.QueryParam("from"), c.QueryParam("to")
	if from == "" {
		return a.fail(c, badParam("from", "required"))
	}
	if to == "" {
		return a.fail(c, badParam("to", "required"))
	}
	g, _, err := a.graphFor(c)
	if err != nil {
		return a.fail(c, err)
	}
	p, err := g.Path(from, to)
	if err != nil {
		return a.fail(c, err)
	}
	if p == nil {
		p = []string{}
	}
	return c.JSON(http.StatusOK, map[string]any{"from": from, "to": to, "path": p})
}

// maxServices bounds the services list.
const maxServices = 5000

func (a *handlers) getServices(c echo.Context) error {
	p, err := ParseGraphParams(c.QueryParams(), a.Now(), a.Live.MaxWindow())
	if err != nil {
		return a.fail(c, err)
	}
	ctx, cancel := a.ctx(c)
	defer cancel()
	t, missing, err := a.traffic(ctx, p)
	if err != nil {
		return a.fail(c, err)
	}
	svcs := graph.Services(t, p.Namespace)
	truncated := len(svcs) > maxServices
	if truncated {
		svcs = svcs[:maxServices]
	}
	return c.JSON(http.StatusOK, map[string]any{
		"source": p.Source, "window": p.Window.String(), "end": p.End.UTC(),
		"services": svcs, "truncated": truncated, "partial": t.Partial, "missing": missing,
	})
}

// maxSeriesPoints bounds a series.
const maxSeriesPoints = 120

func (a *handlers) getService(c echo.Context) error {
	ns, err := parseName("ns", pathParam(c, "ns"))
	if err == nil && ns == "" {
		err = badParam("ns", "required")
	}
	if err != nil {
		return a.fail(c, err)
	}
	name, err := parseName("name", pathParam(c, "name"))
	if err == nil && name == "" {
		err = badParam("name", "required")
	}
	if err != nil {
		return a.fail(c, err)
	}
	q := c.QueryParams()
	rng, err := parseWindow("range", q.Get("range"), time.Hour)
	if err != nil {
		return a.fail(c, err)
	}
	end, endGiven, err := parseTime("end", q.Get("end"), a.Now())
	if err != nil {
		return a.fail(c, err)
	}
	source := q.Get("source")
	switch source {
	case "":
		source = SourceLive
		if endGiven || rng > a.Live.MaxWindow() {
			source = SourceClickHouse
		}
	case SourceLive, SourceClickHouse, SourcePrometheus:
	default:
		return a.fail(c, badParam("source", "%q: want live, clickhouse or prometheus", truncate(source)))
	}
	ctx, cancel := a.ctx(c)
	defer cancel()
	var (
		series  []graph.Series
		step    time.Duration
		missing []graph.MissingReplica // replicas a live read of all of them left out
	)
	switch source {
	case SourceLive:
		if endGiven {
			return a.fail(c, badParam("source", "the live graph has no past: drop end or use source=clickhouse"))
		}
		if a.Replicas != nil {
			series, step, missing, err = a.Replicas.ServiceSeries(ctx, ns, name, end, rng, maxSeriesPoints)
			break
		}
		series, step, err = a.Live.Snapshot().ServiceSeries(ns, name, rng, maxSeriesPoints)
	case SourceClickHouse:
		if a.history == nil {
			return a.fail(c, badParam("source", "no ClickHouse is configured"))
		}
		step = stepFor(rng, time.Minute)
		series, err = a.history.ServiceSeries(ctx, ns, name, end, rng, step)
	case SourcePrometheus:
		if a.Prometheus == nil {
			return a.fail(c, badParam("source", "no Prometheus is configured (start meshlens with --prometheus URL)"))
		}
		step = stepFor(rng, 10*time.Second)
		series, err = a.Prometheus.ServiceSeries(ctx, ns, name, end, rng, step)
	}
	if err != nil {
		return a.fail(c, err)
	}
	return c.JSON(http.StatusOK, map[string]any{
		"namespace": ns, "name": name, "source": source, "range": rng.String(), "end": end.UTC(),
		"step": step.String(), "stepSeconds": step.Seconds(), "versions": series,
		"partial": len(missing) > 0, "missing": missing,
	})
}

func (a *handlers) getVersionStats(c echo.Context) error {
	ns, name, ver := pathParam(c, "ns"), pathParam(c, "name"), pathParam(c, "version")
	for _, f := range [][2]string{{"ns", ns}, {"name", name}, {"version", ver}} {
		if _, err := parseName(f[0], f[1]); err != nil || f[1] == "" {
			return a.fail(c, badParam(f[0], "%q is not a valid name", truncate(f[1])))
		}
	}
	w, err := parseWindow("window", c.QueryParam("window"), time.Minute)
	if err != nil {
		return a.fail(c, err)
	}
	if a.Replicas == nil {
		vs, err := a.Live.VersionStats(ns, name, ver, w)
		if err != nil {
			return a.fail(c, err)
		}
		return c.JSON(http.StatusOK, vs)
	}
	ctx, cancel := a.ctx(c)
	defer cancel()
	sum, missing, err := a.Replicas.VersionSum(ctx, ns, name, ver, w)
	if err != nil {
		return a.fail(c, err)
	}
	return c.JSON(http.StatusOK, struct {
		graph.VersionStats
		Partial bool                   `json:"partial,omitempty"`
		Missing []graph.MissingReplica `json:"missing,omitempty"`
	}{sum.Stats(w), len(missing) > 0, missing})
}

func (a *handlers) getLogs(c echo.Context) error {
	p, err := ParseLogsParams(c.QueryParams(), a.Now())
	if err != nil {
		return a.fail(c, err)
	}
	return a.fromClickHouse(c, func(ctx context.Context, st *store.Store) (any, error) { return Logs(ctx, st, p) })
}

// fromClickHouse answers with what read finds in ClickHouse, within the
// request's time bound.
func (a *handlers) fromClickHouse(c echo.Context, read func(context.Context, *store.Store) (any, error)) error {
	if a.Store == nil {
		return a.fail(c, errors.Join(errUnavailable, errors.New("no ClickHouse is configured")))
	}
	ctx, cancel := a.ctx(c)
	defer cancel()
	v, err := read(ctx, a.Store)
	if err != nil {
		return a.fail(c, err)
	}
	return c.JSON(http.StatusOK, v)
}

func (a *handlers) getTrace(c echo.Context) error {
	id, err := ParseTraceID(pathParam(c, "traceId"))
	if err != nil {
		return a.fail(c, err)
	}
	return a.fromClickHouse(c, func(ctx context.Context, st *store.Store) (any, error) { return GetTrace(ctx, st, id) })
}

func (a *handlers) searchTraces(c echo.Context) error {
	p, err := ParseTraceSearchParams(c.QueryParams(), a.Now())
	if err != nil {
		return a.fail(c, err)
	}
	return a.fromClickHouse(c, func(ctx context.Context, st *store.Store) (any, error) {
		ts, err := SearchTraces(ctx, st, p)
		return map[string]any{"traces": ts}, err
	})
}
