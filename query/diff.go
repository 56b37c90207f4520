package query

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/meshlens/meshlens/graph"
)

// DiffParams are the parameters of /graph/diff: two windows, [BeforeStart,
// BeforeEnd) and [AfterStart, AfterEnd), on whole minutes (the rollups'
// grain), the first ending no later than the second starts.
type DiffParams struct {
	BeforeStart, BeforeEnd time.Time
	AfterStart, AfterEnd   time.Time
	View                   graph.View
	Namespace              string
	Alpha                  float64
	// Clipped says the after window reached past now and was cut there.
	Clipped bool
}

// Bounds of a diff.
const (
	DefaultDiffSpan = 10 * time.Minute
	MaxDiffSpan     = 7 * 24 * time.Hour
)

// ParseDiffParams reads either beforeStart, beforeEnd, afterStart and
// afterEnd, or around and span (the span before around and the span after
// it), plus view, namespace and alpha. Every error names its parameter.
func ParseDiffParams(q url.Values, now time.Time) (DiffParams, error) {
	var p DiffParams
	view := q.Get("view")
	if view == "" {
		view = string(graph.ViewService)
	}
	var err error
	if p.View, err = graph.ParseView(view); err != nil {
		return p, badParam("view", "%q: want service, version or workload", truncate(view))
	}
	if p.Namespace, err = parseName("namespace", q.Get("namespace")); err != nil {
		return p, err
	}
	p.Alpha = 0.01
	if s := q.Get("alpha"); s != "" {
		a, err := strconv.ParseFloat(s, 64)
		if err != nil || !(a > 0 && a <= 0.5) {
			return p, badParam("alpha", "%q is not a significance level in (0, 0.5]", truncate(s))
		}
		p.Alpha = a
	}
	explicit := []string{"beforeStart", "beforeEnd", "afterStart", "afterEnd"}
	if q.Has("around") {
		for _, name := range explicit {
			if q.Has(name) {
				return p, badParam(name, "give either around (and span) or the four window bounds, not both")
			}
		}
		if q.Get("around") == "" {
			return p, badParam("around", "empty: give the time of the change")
		}
		around, _, err := parseTime("around", q.Get("around"), now)
		if err != nil {
			return p, err
		}
		span := DefaultDiffSpan
		if s := q.Get("span"); s != "" {
			if span, err = parseDuration("span", s); err != nil {
				return p, err
			}
			if span < time.Minute || span > MaxDiffSpan {
				return p, badParam("span", "%v is outside [1m, %v]", span, MaxDiffSpan)
			}
		}
		// A change inside a minute belongs to neither window's minute: the
		// before window ends at the minute it happened in, the after window
		// starts at the next one.
		at := around.Truncate(time.Minute)
		p.BeforeStart, p.BeforeEnd = at.Add(-span), at
		p.AfterStart, p.AfterEnd = at.Add(time.Minute), at.Add(time.Minute+span)
		if at.Equal(around) {
			p.AfterStart, p.AfterEnd = at, at.Add(span)
		}
	} else {
		if q.Has("span") {
			return p, badParam("span", "span goes with around; with explicit windows give beforeStart, beforeEnd, afterStart and afterEnd")
		}
		bounds := make([]time.Time, len(explicit))
		for i, name := range explicit {
			s := q.Get(name)
			if s == "" {
				return p, badParam(name, "required: give beforeStart, beforeEnd, afterStart and afterEnd, or around and span")
			}
			if bounds[i], _, err = parseTime(name, s, now); err != nil {
				return p, err
			}
		}
		for _, w := range [][2]int{{0, 1}, {2, 3}} {
			if d := bounds[w[1]].Sub(bounds[w[0]]); d >= 0 && d < time.Minute {
				return p, badParam(explicit[w[1]], "the window %s to %s is shorter than a minute, the rollups' grain", stamp(bounds[w[0]]), stamp(bounds[w[1]]))
			}
		}
		for i := range bounds {
			bounds[i] = bounds[i].Truncate(time.Minute)
		}
		p.BeforeStart, p.BeforeEnd, p.AfterStart, p.AfterEnd = bounds[0], bounds[1], bounds[2], bounds[3]
	}
	for _, w := range []struct {
		end         string
		start, stop time.Time
	}{{"beforeEnd", p.BeforeStart, p.BeforeEnd}, {"afterEnd", p.AfterStart, p.AfterEnd}} {
		switch d := w.stop.Sub(w.start); {
		case d < 0:
			return p, badParam(w.end, "%s is before the window's start %s: the window is inverted", stamp(w.stop), stamp(w.start))
		case d < time.Minute:
			return p, badParam(w.end, "the window %s to %s is shorter than a minute, the rollups' grain (bounds are rounded down to whole minutes)", stamp(w.start), stamp(w.stop))
		case d > MaxWindow:
			return p, badParam(w.end, "the window is %v long, longer than %v", d, MaxWindow)
		}
	}
	if p.AfterStart.Before(p.BeforeEnd) {
		if p.AfterEnd.After(p.BeforeStart) {
			return p, badParam("afterStart", "the after window (from %s) overlaps the before window (to %s): the windows must not overlap", stamp(p.AfterStart), stamp(p.BeforeEnd))
		}
		return p, badParam("afterStart", "the after window (%s to %s) comes before the before window (%s to %s): swap them", stamp(p.AfterStart), stamp(p.AfterEnd), stamp(p.BeforeStart), stamp(p.BeforeEnd))
	}
	// The current minute is still being written: windows stop before it.
	if cut := now.Truncate(time.Minute); p.AfterEnd.After(cut) {
		if p.AfterStart.Add(time.Minute).After(cut) {
			return p, badParam("afterStart", "the after window starts at %s, not a whole minute before now (%s): there is nothing to compare yet", stamp(p.AfterStart), stamp(now))
		}
		p.AfterEnd, p.Clipped = cut, true
	}
	return p, nil
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// errNoData is a diff of two windows without traffic.
var errNoData = errors.New("no data")

func (a *handlers) getGraphDiff(c echo.Context) error {
	p, err := ParseDiffParams(c.QueryParams(), a.Now())
	if err != nil {
		return a.fail(c, err)
	}
	if a.history == nil {
		return a.fail(c, errors.Join(errUnavailable, errors.New("no ClickHouse is configured: the diff reads the history rollups")))
	}
	ctx, cancel := a.ctx(c)
	defer cancel()
	d, err := a.history.Diff(ctx, p, graph.Options{View: p.View, Namespace: p.Namespace, MaxNodes: a.MaxNodes, MaxEdges: a.MaxEdges,
		Source: SourceClickHouse, Now: a.Now()})
	if err != nil {
		return a.fail(c, err)
	}
	return c.JSON(http.StatusOK, d)
}

// Diff reads both windows of p from the rollups and compares them; two
// windows without traffic are errNoData, not an empty diff.
func (h *History) Diff(ctx context.Context, p DiffParams, opts graph.Options) (*graph.Diff, error) {
	before, err := h.Traffic(ctx, p.BeforeEnd, p.BeforeEnd.Sub(p.BeforeStart), p.Namespace)
	if err != nil {
		return nil, fmt.Errorf("diff, before window: %w", err)
	}
	after, err := h.Traffic(ctx, p.AfterEnd, p.AfterEnd.Sub(p.AfterStart), p.Namespace)
	if err != nil {
		return nil, fmt.Errorf("diff, after window: %w", err)
	}
	d := graph.DiffTraffic(before, after, opts, graph.DiffOptions{Alpha: p.Alpha})
	if d.Before.Requests == 0 && d.After.Requests == 0 {
		where := ""
		if p.Namespace != "" {
			where = " in namespace " + p.Namespace
		}
		return nil, fmt.Errorf("%w: neither window has traffic%s in ClickHouse (before %s to %s, after %s to %s): pick windows when the mesh had traffic",
			errNoData, where, stamp(p.BeforeStart), stamp(p.BeforeEnd), stamp(p.AfterStart), stamp(p.AfterEnd))
	}
	if p.Clipped {
		d.Notices = append(d.Notices, fmt.Sprintf("the after window reached past now: it ends at %s, the last whole minute", stamp(p.AfterEnd)))
	}
	return d, nil
}
