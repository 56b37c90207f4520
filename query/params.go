package query

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/meshlens/meshlens/graph"
)

// ParamError is a bad query parameter; the API answers it with 400 and a
// JSON body naming the parameter.
type ParamError struct {
	Parameter string `json:"parameter"`
	Message   string `json:"error"`
}

func (e *ParamError) Error() string { return e.Parameter + ": " + e.Message }

func badParam(name, format string, args ...any) *ParamError {
	return &ParamError{Parameter: name, Message: fmt.Sprintf(format, args...)}
}

// Sources of graph data.
const (
	SourceLive       = "live"
	SourceClickHouse = "clickhouse"
	SourcePrometheus = "prometheus"
)

// Bounds of accepted values.
const (
	MinWindow     = 10 * time.Second
	MaxWindow     = 31 * 24 * time.Hour
	maxNameLen    = 253
	maxPathLen    = 2048
	maxTraceIDLen = 64
)

// names are Kubernetes-ish identifiers plus what versions and workloads use.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._\-]*$`)
var hexRE = regexp.MustCompile(`^[0-9a-fA-F]+$`)

// parseDuration accepts Go durations and a day suffix ("7d").
func parseDuration(name, s string) (time.Duration, error) {
	if s == "" {
		return 0, badParam(name, "empty")
	}
	if strings.HasSuffix(s, "d") {
		n, err := strconv.ParseUint(strings.TrimSuffix(s, "d"), 10, 16)
		if err != nil {
			return 0, badParam(name, "%q is not a duration like 5m, 1h or 7d", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, badParam(name, "%q is not a duration like 5m, 1h or 7d", s)
	}
	return d, nil
}

func parseWindow(name, s string, def time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	d, err := parseDuration(name, s)
	if err != nil {
		return 0, err
	}
	if d < MinWindow || d > MaxWindow {
		return 0, badParam(name, "%v is outside [%v, %v]", d, MinWindow, MaxWindow)
	}
	return d.Truncate(time.Second), nil
}

func parseTime(name, s string, now time.Time) (time.Time, bool, error) {
	if s == "" {
		return now, false, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		if sec, err2 := strconv.ParseInt(s, 10, 64); err2 == nil && sec > 0 && sec < 1<<40 {
			return time.Unix(sec, 0), true, nil
		}
		return time.Time{}, false, badParam(name, "%q is not an RFC 3339 time or unix seconds", s)
	}
	if t.Year() < 2000 || t.After(now.Add(24*time.Hour)) {
		return time.Time{}, false, badParam(name, "%v is out of range", t)
	}
	return t, true, nil
}

func parseName(name, s string) (string, error) {
	if s == "" {
		return "", nil
	}
	if len(s) > maxNameLen || !nameRE.MatchString(s) {
		return "", badParam(name, "%q is not a valid name", truncate(s))
	}
	return s, nil
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

func parseLimit(name, s string, def, max int) (int, error) {
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, badParam(name, "%q is not a positive integer", truncate(s))
	}
	if n > max {
		n = max
	}
	return n, nil
}

// GraphParams are the parameters of /graph and the routes built on it.
type GraphParams struct {
	Window    time.Duration
	End       time.Time
	EndGiven  bool
	View      graph.View
	Namespace string
	Source    string
}

// ParseGraphParams reads window, end, view, namespace and source. The source
// defaults to live unless an end is given or the window is longer than the
// live graph keeps (liveMax), which mean history.
func ParseGraphParams(q url.Values, now time.Time, liveMax time.Duration) (GraphParams, error) {
	var p GraphParams
	var err error
	if p.Window, err = parseWindow("window", q.Get("window"), 5*time.Minute); err != nil {
		return p, err
	}
	if p.End, p.EndGiven, err = parseTime("end", q.Get("end"), now); err != nil {
		return p, err
	}
	view := q.Get("view")
	if view == "" {
		view = string(graph.ViewService)
	}
	if p.View, err = graph.ParseView(view); err != nil {
		return p, badParam("view", "%q: want service, version or workload", truncate(view))
	}
	if p.Namespace, err = parseName("namespace", q.Get("namespace")); err != nil {
		return p, err
	}
	switch s := q.Get("source"); s {
	case "":
		p.Source = SourceLive
		if p.EndGiven || p.Window > liveMax {
			p.Source = SourceClickHouse
		}
	case SourceLive:
		if p.EndGiven {
			return p, badParam("source", "the live graph has no past: drop end or use source=clickhouse")
		}
		if p.Window > liveMax {
			return p, badParam("window", "%v is longer than the live graph keeps (%v); use source=clickhouse", p.Window, liveMax)
		}
		p.Source = s
	case SourceClickHouse, SourcePrometheus:
		p.Source = s
	default:
		return p, badParam("source", "%q: want live, clickhouse or prometheus", truncate(s))
	}
	return p, nil
}

// LogsParams are the parameters of /logs.
type LogsParams struct {
	Namespace, Service, Version string
	Code                        int // -1 for any
	Path                        string
	PathPrefix                  bool // path ended in '*'
	TraceID                     string
	Since, Until                time.Time
	Limit                       int
	Cursor                      *Cursor
}

// Cursor is the position after the last row of a page: newest first, so the
// next page starts strictly below it.
type Cursor struct {
	TimeNs uint64
	Hash   uint64
}

// Encode makes the cursor opaque.
func (c Cursor) Encode() string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], c.TimeNs)
	binary.BigEndian.PutUint64(b[8:], c.Hash)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// DecodeCursor parses an opaque cursor.
func DecodeCursor(s string) (Cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != 16 {
		return Cursor{}, badParam("cursor", "not a cursor this API returned")
	}
	return Cursor{TimeNs: binary.BigEndian.Uint64(b[:8]), Hash: binary.BigEndian.Uint64(b[8:])}, nil
}

// Log search bounds.
const (
	DefaultLogLimit = 100
	MaxLogLimit     = 1000
)

// ParseLogsParams reads the /logs parameters; the time range defaults to the
// last hour.
func ParseLogsParams(q url.Values, now time.Time) (LogsParams, error) {
	p := LogsParams{Code: -1}
	var err error
	for _, f := range []struct {
		name string
		dst  *string
	}{{"namespace", &p.Namespace}, {"service", &p.Service}, {"version", &p.Version}} {
		if *f.dst, err = parseName(f.name, q.Get(f.name)); err != nil {
			return p, err
		}
	}
	if s := q.Get("code"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > 999 {
			return p, badParam("code", "%q is not an HTTP status code", truncate(s))
		}
		p.Code = n
	}
	if s := q.Get("path"); s != "" {
		if len(s) > maxPathLen {
			return p, badParam("path", "longer than %d bytes", maxPathLen)
		}
		if strings.HasSuffix(s, "*") {
			p.PathPrefix, s = true, strings.TrimSuffix(s, "*")
		}
		p.Path = s
	}
	if s := q.Get("traceId"); s != "" {
		if len(s) > maxTraceIDLen || !hexRE.MatchString(s) {
			return p, badParam("traceId", "%q is not a hex trace id", truncate(s))
		}
		p.TraceID = strings.ToLower(s)
	}
	if p.Since, p.Until, err = parseRange(q, now); err != nil {
		return p, err
	}
	if p.Limit, err = parseLimit("limit", q.Get("limit"), DefaultLogLimit, MaxLogLimit); err != nil {
		return p, err
	}
	if s := q.Get("cursor"); s != "" {
		c, err := DecodeCursor(s)
		if err != nil {
			return p, err
		}
		p.Cursor = &c
	}
	return p, nil
}

// parseRange reads since/until: until defaults to now, since to an hour
// before until, and since must come first.
func parseRange(q url.Values, now time.Time) (since, until time.Time, err error) {
	if until, _, err = parseTime("until", q.Get("until"), now); err != nil {
		return since, until, err
	}
	since, given, err := parseTime("since", q.Get("since"), now)
	if err != nil {
		return since, until, err
	}
	if !given {
		since = until.Add(-time.Hour)
	}
	if !since.Before(until) {
		return since, until, badParam("since", "must be before until")
	}
	return since, until, nil
}

// TraceSearchParams are the parameters of /traces.
type TraceSearchParams struct {
	Service      string
	MinDuration  time.Duration
	Since, Until time.Time
	Limit        int
}

// Trace search bounds.
const (
	DefaultTraceLimit = 20
	MaxTraceLimit     = 100
	MaxSpans          = 10000
)

// ParseTraceSearchParams reads the /traces parameters.
func ParseTraceSearchParams(q url.Values, now time.Time) (TraceSearchParams, error) {
	var p TraceSearchParams
	var err error
	if p.Service, err = parseName("service", q.Get("service")); err != nil {
		return p, err
	}
	if s := q.Get("minDurationMs"); s != "" {
		ms, err := strconv.ParseFloat(s, 64)
		if err != nil || ms < 0 || ms > 1e9 || ms != ms {
			return p, badParam("minDurationMs", "%q is not a duration in milliseconds", truncate(s))
		}
		p.MinDuration = time.Duration(ms * float64(time.Millisecond))
	}
	if p.Since, p.Until, err = parseRange(q, now); err != nil {
		return p, err
	}
	if p.Limit, err = parseLimit("limit", q.Get("limit"), DefaultTraceLimit, MaxTraceLimit); err != nil {
		return p, err
	}
	return p, nil
}

// ParseTraceID validates a trace id path parameter.
func ParseTraceID(s string) (string, error) {
	if s == "" || len(s) > maxTraceIDLen || !hexRE.MatchString(s) {
		return "", badParam("traceId", "%q is not a hex trace id", truncate(s))
	}
	return strings.ToLower(s), nil
}

// stepFor picks a series step giving at most about 120 points over rng,
// from a list of round steps no finer than min.
func stepFor(rng, min time.Duration) time.Duration {
	for _, s := range []time.Duration{10 * time.Second, 30 * time.Second, time.Minute, 5 * time.Minute, 10 * time.Minute,
		30 * time.Minute, time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour} {
		if s >= min && rng/s <= 120 {
			return s
		}
	}
	return 24 * time.Hour
}
