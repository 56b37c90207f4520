// Package audit is meshlens' audit trail: every accepted change (config from
// the API, the config dir or Kubernetes; rollout transitions, whoever made
// them: an operator, the judge, an alert, Alertmanager) with who made it,
// from where, what it changed and the config version it produced, written
// to ClickHouse (audit_log) and read back through GET /api/v1/audit and
// `meshlens audit`.
package audit

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshlens/meshlens/store"
)

// Entry is one accepted change.
type Entry = store.AuditRow

// queueSize bounds the entries waiting for ClickHouse.
const queueSize = 10_000

// Log records entries to ClickHouse in the background: a change is never
// held up by ClickHouse, and entries wait (bounded) while it is away.
type Log struct {
	st     *store.Store
	logger *slog.Logger
	queue  chan Entry

	recorded *prometheus.CounterVec
}

// New builds the log over st.
func New(st *store.Store, logger *slog.Logger, reg prometheus.Registerer) (*Log, error) {
	l := &Log{st: st, logger: logger, queue: make(chan Entry, queueSize),
		recorded: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshlens_audit_entries_total",
			Help: "Audit entries by result: written (to ClickHouse), dropped (the queue of entries waiting for ClickHouse was full)."}, []string{"result"})}
	if err := reg.Register(l.recorded); err != nil {
		return nil, fmt.Errorf("audit: register metrics: %w", err)
	}
	return l, nil
}

// Record queues e; Time is set when empty.
func (l *Log) Record(e Entry) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	select {
	case l.queue <- e:
	default:
		l.recorded.WithLabelValues("dropped").Inc()
		l.logger.Error("audit entry dropped: ClickHouse has not taken the last entries", "kind", e.Kind, "namespace", e.Namespace, "name", e.Name, "action", e.Action, "actor", e.Actor)
	}
}

// Run writes queued entries until ctx ends, retrying while ClickHouse fails.
func (l *Log) Run(ctx context.Context) error {
	delay := 100 * time.Millisecond
	var batch []Entry
	for {
		if len(batch) == 0 {
			select {
			case <-ctx.Done():
				return nil
			case e := <-l.queue:
				batch = append(batch, e)
			}
		}
	more:
		for len(batch) < 1000 {
			select {
			case e := <-l.queue:
				batch = append(batch, e)
			default:
				break more
			}
		}
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := l.st.EnsureSchema(wctx)
		if err == nil {
			err = l.st.InsertAudit(wctx, batch)
		}
		cancel()
		if err == nil {
			l.recorded.WithLabelValues("written").Add(float64(len(batch)))
			batch, delay = batch[:0], 100*time.Millisecond
			continue
		}
		l.logger.Warn("audit entries not written yet; retrying", "entries", len(batch), "retry_in", delay, "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
		delay = min(delay*2, 5*time.Second)
	}
}

// RegisterRoutes mounts GET /audit on api.
func (l *Log) RegisterRoutes(api *echo.Group) {
	api.GET("/audit", l.handleList)
}

func (l *Log) handleList(c echo.Context) error {
	q := store.AuditQuery{Kind: c.QueryParam("kind"), Namespace: c.QueryParam("namespace"), Name: c.QueryParam("name"),
		Actor: c.QueryParam("actor"), Limit: 100}
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10_000 {
			return c.JSON(http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("limit %q: want 1 to 10000", v)})
		}
		q.Limit = n
	}
	for name, t := range map[string]*time.Time{"since": &q.Since, "until": &q.Until} {
		v := c.QueryParam(name)
		if v == "" {
			continue
		}
		if d, err := time.ParseDuration(v); err == nil {
			*t = time.Now().Add(-d)
			continue
		}
		at, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return c.JSON(http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("%s %q: want RFC 3339 or a duration ago (1h)", name, v)})
		}
		*t = at
	}
	entries, err := l.st.Audit(c.Request().Context(), q)
	if err != nil {
		return c.JSON(http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
	}
	return c.JSON(http.StatusOK, map[string]any{"entries": entries})
}
