package plugin

import (
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"
)

// Bounds of what the plugin asks meshlens for.
const (
	// MaxWindow is meshlens' longest graph window and series range (31d).
	MaxWindow = 31 * 24 * time.Hour
	// MinWindow is meshlens' shortest window.
	MinWindow = 10 * time.Second
	// nowSlack: a range ending this close to now ends "now" (Grafana's
	// "now" is when the dashboard asked, a moment ago).
	nowSlack = time.Minute
)

// window is a dashboard time range as meshlens takes it: a length and, for
// a range in the past, its end. Live is a range ending now: meshlens answers
// from its in-memory graph (up to its live window) without an end.
type window struct {
	Length time.Duration
	End    time.Time
	Live   bool
	Capped bool // the range was longer than MaxWindow and was cut to its last 31 days
}

func windowOf(tr backend.TimeRange, now time.Time) (window, error) {
	if tr.To.IsZero() {
		tr.To = now
	}
	if tr.From.IsZero() {
		tr.From = tr.To.Add(-time.Hour)
	}
	if !tr.From.Before(tr.To) {
		return window{}, &QueryError{Message: fmt.Sprintf("the time range %s to %s is empty", tr.From.UTC().Format(time.RFC3339), tr.To.UTC().Format(time.RFC3339))}
	}
	w := window{Length: tr.To.Sub(tr.From).Round(time.Second), End: tr.To.UTC().Truncate(time.Second)}
	w.Live = now.Sub(tr.To) < nowSlack
	if w.Length > MaxWindow {
		w.Length, w.Capped = MaxWindow, true
	}
	if w.Length < MinWindow {
		w.Length = MinWindow
	}
	return w, nil
}

// params sets meshlens' window (or range) and end parameters.
func (w window) params(q url.Values, lengthParam string) {
	q.Set(lengthParam, formatDuration(w.Length))
	if !w.Live {
		q.Set("end", w.End.Format(time.RFC3339))
	}
}

// formatDuration writes d as meshlens parses it: whole days as "Nd", else Go's form.
func formatDuration(d time.Duration) string {
	if d >= 24*time.Hour && d%(24*time.Hour) == 0 {
		return strconv.Itoa(int(d/(24*time.Hour))) + "d"
	}
	return d.String()
}

func (w window) notices() []data.Notice {
	if !w.Capped {
		return nil
	}
	return []data.Notice{{Severity: data.NoticeSeverityWarning, Text: "meshlens answers at most 31 days: this shows the last 31 days of the time range"}}
}

// since and until of a range for the log and trace searches, capped as the graph is.
func (w window) since() time.Time { return w.end().Add(-w.Length) }

func (w window) end() time.Time { return w.End }
