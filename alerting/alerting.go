package alerting

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshlens/meshlens/controlplane/config"
	"github.com/meshlens/meshlens/graph"
	"github.com/meshlens/meshlens/rollout"
)

// Rollbacks is what alerting needs of the rollout engine (*rollout.Engine).
type Rollbacks interface {
	Rollback(ctx context.Context, ns, name, source, reason string) (rollout.ActionResult, error)
	FindByVersion(ns, service, version string) []string
}

// Live is where rules read traffic, up to the last record: *graph.Live, or
// the live graphs of every meshlens replica added up (replicas.Replicas).
type Live interface {
	TrafficNow(ctx context.Context, end time.Time, window time.Duration) (*graph.Traffic, error)
}

// Options tune alerting. Zero values take the defaults.
type Options struct {
	// Interval between rule evaluations. Default 5s.
	Interval time.Duration
	// ReceiverSecret, if set, makes POST /alerts/alertmanager require an
	// HMAC signature (SignatureHeader) on top of the bearer token.
	ReceiverSecret string
	// ExternalURL is written into notifications (Alertmanager's
	// externalURL): where meshlens' UI is.
	ExternalURL string
	Notifier    NotifierOptions
	Now         func() time.Time
	// Peers, when set, are the other meshlens replicas: GET /alerts on any
	// of them answers the rule alerts of the one evaluating the rules and
	// the Alertmanager alerts every one received.
	Peers Peers
}

// Alerting evaluates AlertRules, notifies receivers, and receives
// Alertmanager's webhooks. It is the one owner of alert state.
type Alerting struct {
	store     *config.Store
	live      Live
	rollbacks Rollbacks
	opts      Options
	logger    *slog.Logger
	notifier  *Notifier

	mu         sync.Mutex
	evaluating bool                  // Run is running: this replica acts
	rules      map[string]*ruleState // rule key "ns/name" -> state
	amSeen     map[string]time.Time  // Alertmanager alert fingerprint+startsAt -> when first seen
	amFire     map[string]ActiveAlert

	// rollingBack are the rollbacks alerts started, each on its own: a
	// rollout whose routes cannot be written now holds up neither the
	// evaluation of the rules nor other rollouts' rollbacks.
	rollingBack sync.WaitGroup

	evaluations prometheus.Counter
	firing      prometheus.Gauge
	received    *prometheus.CounterVec
}

// ActiveAlert is a firing (or pending) alert, from a rule or Alertmanager.
type ActiveAlert struct {
	Source      string            `json:"source"` // "rule" or "alertmanager"
	Rule        string            `json:"rule,omitempty"`
	State       string            `json:"state"` // "pending" or "firing"
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations,omitempty"`
	StartsAt    time.Time         `json:"startsAt"`
	Value       float64           `json:"value"`
	Fingerprint string            `json:"fingerprint"`
	Action      string            `json:"action,omitempty"` // what meshlens did about it
}

type ruleState struct {
	ns, name    string
	spec        *RuleSpec
	state       string // "", "pending", "firing"
	activeSince time.Time
	value       float64
	action      string
}

// New builds alerting. rollbacks may be nil (no rollout engine): alerts
// then never roll back and the receiver says so.
func New(store *config.Store, live Live, rollbacks Rollbacks, opts Options, logger *slog.Logger, reg prometheus.Registerer) (*Alerting, error) {
	if opts.Interval <= 0 {
		opts.Interval = 5 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Notifier.Now == nil {
		opts.Notifier.Now = opts.Now
	}
	n, err := NewNotifier(opts.Notifier, logger, reg)
	if err != nil {
		return nil, err
	}
	a := &Alerting{store: store, live: live, rollbacks: rollbacks, opts: opts, logger: logger, notifier: n,
		rules: map[string]*ruleState{}, amSeen: map[string]time.Time{}, amFire: map[string]ActiveAlert{},
		evaluations: prometheus.NewCounter(prometheus.CounterOpts{Name: "meshlens_alert_rule_evaluations_total", Help: "Rounds of AlertRule evaluation."}),
		firing:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "meshlens_alerts_firing", Help: "Alerts of meshlens' own rules that are firing."}),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshlens_alertmanager_alerts_received_total",
			Help: "Alerts received from Alertmanager by outcome."}, []string{"outcome"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{a.evaluations, a.firing, a.received} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("alerting: register metrics: %w", err)
			}
		}
	}
	return a, nil
}

// Run evaluates the rules every interval until ctx ends, then waits for
// notifications in flight.
func (a *Alerting) Run(ctx context.Context) error {
	a.setEvaluating(true)
	defer a.setEvaluating(false)
	t := time.NewTicker(a.opts.Interval)
	defer t.Stop()
	defer a.notifier.Wait()
	defer a.rollingBack.Wait() // before the notifier's: a rollback ends with a notification
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			a.Evaluate(ctx)
		}
	}
}

// Evaluate runs one round over every AlertRule of the current config. The
// rules' values are read (from peers, too) and rollbacks are made without
// a.mu held: only the alerts' states change under it. Each rollback runs
// on its own and is not waited for: its firing notification, which says
// what the rollback did, is sent when it returns.
func (a *Alerting) Evaluate(ctx context.Context) {
	now := a.opts.Now()
	// One read per window in a round, however many rules share it.
	read := map[[2]int64]*graph.Traffic{}
	traffic := func(end time.Time, w time.Duration) (*graph.Traffic, error) {
		k := [2]int64{end.UnixNano(), int64(w)}
		if t := read[k]; t != nil {
			return t, nil
		}
		t, err := a.live.TrafficNow(ctx, end, w)
		if err == nil {
			read[k] = t
		}
		return t, err
	}
	type evaluated struct {
		key, ns, name string
		spec          *RuleSpec
		value         float64
		active        bool
	}
	var round []evaluated
	seen := map[string]bool{}
	for _, o := range a.store.Snapshot().OfKind(Kind) {
		spec, ok := o.Spec.(*RuleSpec)
		if !ok {
			continue
		}
		key := o.Meta.Namespace + "/" + o.Meta.Name
		seen[key] = true
		val, active, err := conditionValue(traffic, now, o.Meta.Namespace, spec.Condition)
		if err != nil {
			a.logger.Error("alert rule not evaluated", "rule", key, "err", err)
			continue
		}
		round = append(round, evaluated{key: key, ns: o.Meta.Namespace, name: o.Meta.Name, spec: spec, value: val, active: active})
	}

	a.mu.Lock()
	a.evaluations.Inc()
	var fired []*ruleState
	for _, ev := range round {
		rs := a.rules[ev.key]
		if rs == nil {
			rs = &ruleState{ns: ev.ns, name: ev.name}
			a.rules[ev.key] = rs
		}
		rs.spec = ev.spec
		rs.value = ev.value
		if a.step(ctx, rs, ev.active, now) {
			fired = append(fired, rs)
		}
	}
	for key, rs := range a.rules {
		if !seen[key] {
			if rs.state == "firing" {
				a.notify(ctx, rs, "resolved", now)
			}
			delete(a.rules, key)
		}
	}
	n := 0
	for _, rs := range a.rules {
		if rs.state == "firing" {
			n++
		}
	}
	a.firing.Set(float64(n))
	type rollback struct {
		rs                          *ruleState
		ns, rollout, source, reason string
	}
	var rollbacks []rollback
	for _, rs := range fired {
		if act := rs.spec.Action; act != nil && act.Rollback != nil {
			rollbacks = append(rollbacks, rollback{rs: rs, ns: rs.ns, rollout: act.Rollback.Rollout, source: "alert:" + rs.name,
				reason: fmt.Sprintf("alert %s: %s of %s is %.4g (threshold %s %.4g)", rs.name, rs.spec.Condition.Metric,
					rs.spec.Condition.Service, rs.value, opOf(rs.spec.Condition), rs.spec.Condition.Threshold)})
		} else {
			a.notify(ctx, rs, "firing", now)
		}
	}
	a.mu.Unlock()

	// The engine writes routes (config store, Kubernetes API): not under
	// a.mu. The firing notification says what the rollback did.
	for _, rb := range rollbacks {
		a.rollingBack.Add(1)
		go func() {
			defer a.rollingBack.Done()
			action := a.rollback(ctx, rb.ns, rb.rollout, rb.source, rb.reason)
			a.mu.Lock()
			rb.rs.action = action
			a.notify(ctx, rb.rs, "firing", now)
			a.mu.Unlock()
		}()
	}
}

// step moves one rule's alert: inactive → pending → firing → resolved, and
// reports whether it fired now (the caller acts and notifies).
func (a *Alerting) step(ctx context.Context, rs *ruleState, active bool, now time.Time) (fired bool) {
	switch {
	case active && rs.state == "":
		rs.state, rs.activeSince, rs.action = "pending", now, ""
		if rs.spec.For.Duration <= 0 {
			return a.fire(rs)
		}
	case active && rs.state == "pending":
		if now.Sub(rs.activeSince) >= rs.spec.For.Duration {
			return a.fire(rs)
		}
	case !active && rs.state == "firing":
		a.notify(ctx, rs, "resolved", now)
		a.logger.Info("alert resolved", "rule", rs.ns+"/"+rs.name)
		rs.state = ""
	case !active:
		rs.state = ""
	}
	return false
}

func (a *Alerting) fire(rs *ruleState) bool {
	rs.state = "firing"
	a.logger.Warn("alert firing", "rule", rs.ns+"/"+rs.name, "value", rs.value, "metric", rs.spec.Condition.Metric)
	return true
}

// rollback rolls a rollout back and says what happened.
func (a *Alerting) rollback(ctx context.Context, ns, name, source, reason string) string {
	if a.rollbacks == nil {
		return "no rollout engine: " + ns + "/" + name + " not rolled back"
	}
	res, err := a.rollbacks.Rollback(ctx, ns, name, source, reason)
	switch {
	case errors.Is(err, rollout.ErrNotFound):
		return fmt.Sprintf("unknown rollout %s/%s", ns, name)
	case err != nil:
		return fmt.Sprintf("rollout %s/%s not rolled back: %v", ns, name, err)
	case !res.Changed:
		return fmt.Sprintf("rollout %s/%s is %s", ns, name, res.To)
	}
	return fmt.Sprintf("rolled back rollout %s/%s (was %s)", ns, name, res.From)
}

func opOf(c Condition) string {
	if c.Op == "" {
		return ">"
	}
	return c.Op
}

func (rs *ruleState) labels() map[string]string {
	l := map[string]string{"alertname": rs.name, "namespace": rs.ns, "service": rs.spec.Condition.Service}
	if v := rs.spec.Condition.Version; v != "" {
		l["version"] = v
	}
	if s := rs.spec.Condition.Source; s != "" {
		l["source"] = s
	}
	if act := rs.spec.Action; act != nil && act.Rollback != nil {
		l["rollout"] = act.Rollback.Rollout
	}
	for k, v := range rs.spec.Labels {
		l[k] = v
	}
	return l
}

// fingerprint identifies an alert by its labels, as Alertmanager does.
func fingerprint(labels map[string]string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		h.Write([]byte(k + "\xff" + labels[k] + "\xff"))
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

func (a *Alerting) notify(ctx context.Context, rs *ruleState, status string, now time.Time) {
	labels := rs.labels()
	ann := map[string]string{"value": fmt.Sprintf("%.6g", rs.value)}
	for k, v := range rs.spec.Annotations {
		ann[k] = v
	}
	if rs.action != "" {
		ann["meshlens_action"] = rs.action
	}
	al := Alert{Status: status, Labels: labels, Annotations: ann, StartsAt: rs.activeSince.UTC(),
		GeneratorURL: strings.TrimRight(a.opts.ExternalURL, "/") + "/api/v1/alerts", Fingerprint: fingerprint(labels)}
	if status == "resolved" {
		al.EndsAt = now.UTC()
	}
	for _, r := range rs.spec.Receivers {
		msg := Message{Version: "4", GroupKey: "{}:{alertname=\"" + rs.name + "\"}", Status: status, Receiver: r.Name,
			GroupLabels: map[string]string{"alertname": rs.name}, CommonLabels: labels, CommonAnnotations: ann,
			ExternalURL: a.opts.ExternalURL, Alerts: []Alert{al}}
		a.notifier.Notify(ctx, r, msg)
	}
}

// conditionValue computes the condition's metric over its window ending at
// now, and whether the condition holds.
func conditionValue(traffic func(time.Time, time.Duration) (*graph.Traffic, error), now time.Time, ns string, c Condition) (float64, bool, error) {
	w := c.window()
	cur, err := sumTraffic(traffic, now, w, ns, c)
	if err != nil {
		return 0, false, err
	}
	var v float64
	enough := cur.Requests >= c.minRequests()
	switch c.Metric {
	case MetricErrorRate:
		v = cur.ErrorRate()
	case MetricLatencyP50:
		v = cur.Quantile(0.5)
	case MetricLatencyP90:
		v = cur.Quantile(0.9)
	case MetricLatencyP99:
		v = cur.Quantile(0.99)
	case MetricRPS:
		v, enough = float64(cur.Requests)/w.Seconds(), true
	case MetricQPSDrop:
		prev, err := sumTraffic(traffic, now.Add(-w), w, ns, c)
		if err != nil {
			return 0, false, err
		}
		enough = prev.Requests >= c.minRequests()
		if prev.Requests > 0 {
			v = math.Max(0, 1-float64(cur.Requests)/float64(prev.Requests))
		}
	default:
		return 0, false, fmt.Errorf("unknown metric %q", c.Metric)
	}
	if math.IsNaN(v) || !enough {
		return 0, false, nil
	}
	if opOf(c) == "<" {
		return v, v < c.Threshold, nil
	}
	return v, v > c.Threshold, nil
}

func sumTraffic(traffic func(time.Time, time.Duration) (*graph.Traffic, error), end time.Time, w time.Duration, ns string, c Condition) (*graph.Stats, error) {
	t, err := traffic(end, w)
	if err != nil {
		return nil, err
	}
	sum := graph.NewStats()
	for k, st := range t.Edges {
		d := k.Destination
		if d.Namespace != ns || d.Service != c.Service || (c.Version != "" && d.Version != c.Version) ||
			(c.Source != "" && k.Source.Service != c.Source) {
			continue
		}
		sum.Add(st)
	}
	return sum, nil
}

// Firing lists alerts firing now: meshlens' own (and pending ones) and
// those Alertmanager reported firing and not yet resolved.
func (a *Alerting) Firing() []ActiveAlert {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []ActiveAlert
	for _, rs := range a.rules {
		if rs.state == "" {
			continue
		}
		l := rs.labels()
		out = append(out, ActiveAlert{Source: "rule", Rule: rs.ns + "/" + rs.name, State: rs.state, Labels: l,
			Annotations: rs.spec.Annotations, StartsAt: rs.activeSince.UTC(), Value: rs.value, Fingerprint: fingerprint(l), Action: rs.action})
	}
	for _, al := range a.amFire {
		out = append(out, al)
	}
	sortAlerts(out)
	return out
}
