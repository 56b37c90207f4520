package alerting

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/meshlens/meshlens/controlplane/config"
	"github.com/meshlens/meshlens/graph"
	"github.com/meshlens/meshlens/rollout"
)

// MaxWebhookBytes bounds a received webhook body.
const MaxWebhookBytes = 1 << 20

// Result is what the receiver did with one received alert.
type Result struct {
	Fingerprint string `json:"fingerprint"`
	Status      string `json:"status"`
	Rollout     string `json:"rollout,omitempty"` // "ns/name"
	// Outcome: "rolled back", "already rolled back", "duplicate",
	// "resolved", "unknown rollout", "not a rollout alert", "refused".
	Outcome string `json:"outcome"`
	Message string `json:"message"`
}

// ReceiveResponse is the body of POST /api/v1/alerts/alertmanager.
type ReceiveResponse struct {
	Results []Result `json:"results"`
}

// FiringResponse is the body of GET /api/v1/alerts.
type FiringResponse struct {
	Alerts []ActiveAlert `json:"alerts"`
	// Partial: with several replicas, some did not answer (Missing names
	// them), so their alerts may be absent.
	Partial bool                   `json:"partial,omitempty"`
	Missing []graph.MissingReplica `json:"missing,omitempty"`
}

// RegisterRoutes serves alerts under api (the /api/v1 group, which already
// carries the read-auth middleware); operator guards the receiver, so
// Alertmanager authenticates with an operator token (http_config
// authorization credentials).
//
//	GET  /alerts               firing alerts (own rules and Alertmanager's; every replica's with Peers)
//	POST /alerts/alertmanager  Alertmanager webhook (version 4)
//	GET  /replica/alerts       this replica's alerts, for the other replicas (with Peers)
func (a *Alerting) RegisterRoutes(api *echo.Group, operator echo.MiddlewareFunc) {
	api.GET("/alerts", a.getAlerts)
	api.POST("/alerts/alertmanager", a.handleAlertmanager, operator)
	if a.opts.Peers != nil {
		a.opts.Peers.PeerRoute(api, replicaAlertsPath, func(c echo.Context) error { return c.JSON(http.StatusOK, a.Own()) })
	}
}

func (a *Alerting) handleAlertmanager(c echo.Context) error {
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, MaxWebhookBytes))
	if err != nil {
		return c.JSON(http.StatusRequestEntityTooLarge, config.ErrorResponse{Error: fmt.Sprintf("reading body: %v (limit %d bytes)", err, MaxWebhookBytes)})
	}
	if a.opts.ReceiverSecret != "" {
		if err := Verify([]byte(a.opts.ReceiverSecret), c.Request().Header, body, a.opts.Now()); err != nil {
			a.received.WithLabelValues("refused").Inc()
			return c.JSON(http.StatusUnauthorized, config.ErrorResponse{Error: "webhook refused: " + err.Error()})
		}
	}
	msg, err := ParseMessage(body)
	if err != nil {
		a.received.WithLabelValues("invalid").Inc()
		return c.JSON(http.StatusBadRequest, config.ErrorResponse{Error: err.Error()})
	}
	results := a.Receive(c.Request().Context(), msg)
	code := http.StatusOK
	unknown := 0
	for _, r := range results {
		switch r.Outcome {
		case "unknown rollout":
			unknown++
		case outcomeNotLeader:
			// Another replica runs the rollouts: Alertmanager retries a 5xx,
			// and behind the load balancer the retry may reach the leader.
			code = http.StatusServiceUnavailable
		}
	}
	if unknown > 0 && unknown == len(results) {
		code = http.StatusNotFound // every alert named a rollout meshlens does not have
	}
	return c.JSON(code, ReceiveResponse{Results: results})
}

// ParseMessage decodes an Alertmanager webhook body strictly enough to act
// on it: version "4", every alert firing or resolved.
func ParseMessage(body []byte) (*Message, error) {
	var m Message
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("not an Alertmanager webhook: %w", err)
	}
	if m.Version != "4" {
		return nil, fmt.Errorf("webhook version %q: want \"4\" (Alertmanager's format)", m.Version)
	}
	for i, al := range m.Alerts {
		if al.Status != "firing" && al.Status != "resolved" {
			return nil, fmt.Errorf("alerts[%d].status %q: want firing or resolved", i, al.Status)
		}
	}
	return &m, nil
}

// Receive acts on an Alertmanager message: a firing alert whose labels name
// a rollout ("rollout", and "namespace", default "default"), or a service
// and version under rollout ("service"/"destination_service_name",
// "version"/"destination_version", namespace as above or
// "destination_service_namespace"), rolls that rollout back. A repeated
// alert (same fingerprint and start) does nothing; a resolved one is
// removed from the firing list.
func (a *Alerting) Receive(ctx context.Context, m *Message) []Result {
	now := a.opts.Now()
	a.mu.Lock()
	for k, at := range a.amSeen {
		if now.Sub(at) > 24*time.Hour {
			delete(a.amSeen, k)
		}
	}
	a.mu.Unlock()
	results := make([]Result, 0, len(m.Alerts))
	for _, al := range m.Alerts {
		fp := al.Fingerprint
		if fp == "" {
			fp = fingerprint(al.Labels)
		}
		res := Result{Fingerprint: fp, Status: al.Status}
		if al.Status == "resolved" {
			a.mu.Lock()
			delete(a.amFire, fp)
			a.mu.Unlock()
			res.Outcome, res.Message = "resolved", "resolved alerts change nothing; a rolled back rollout stays rolled back"
			results = append(results, res)
			a.received.WithLabelValues("resolved").Inc()
			continue
		}
		seenKey := fp + "@" + al.StartsAt.UTC().Format(time.RFC3339Nano)
		a.mu.Lock()
		_, dup := a.amSeen[seenKey]
		if !dup {
			a.amSeen[seenKey] = now
		}
		a.mu.Unlock()
		if dup {
			res.Outcome, res.Message = "duplicate", "this alert was already acted on"
			results = append(results, res)
			a.received.WithLabelValues("duplicate").Inc()
			continue
		}
		a.act(ctx, al, &res)
		a.mu.Lock()
		a.amFire[fp] = ActiveAlert{Source: "alertmanager", State: "firing", Labels: al.Labels, Annotations: al.Annotations,
			StartsAt: al.StartsAt, Fingerprint: fp, Action: res.Message}
		a.mu.Unlock()
		a.received.WithLabelValues(res.Outcome).Inc()
		results = append(results, res)
	}
	return results
}

func (a *Alerting) act(ctx context.Context, al Alert, res *Result) {
	l := al.Labels
	ns := first(l, "namespace", "destination_service_namespace")
	if ns == "" {
		ns = "default"
	}
	reason := fmt.Sprintf("Alertmanager alert %s firing since %s", l["alertname"], al.StartsAt.UTC().Format(time.RFC3339))
	var targets []string
	if name := l["rollout"]; name != "" {
		targets = []string{ns + "/" + name}
	} else if svc := first(l, "service", "destination_service_name"); svc != "" && a.rollbacks != nil {
		targets = a.rollbacks.FindByVersion(ns, svc, first(l, "version", "destination_version"))
		if len(targets) == 0 {
			res.Outcome = "not a rollout alert"
			res.Message = fmt.Sprintf("no rollout in progress for service %s/%s version %q", ns, svc, first(l, "version", "destination_version"))
			return
		}
	} else {
		res.Outcome, res.Message = "not a rollout alert", "labels name no rollout (rollout, namespace) nor service and version"
		return
	}
	for _, t := range targets {
		tns, name, _ := strings.Cut(t, "/")
		res.Rollout = t
		if a.rollbacks == nil {
			res.Outcome, res.Message = "refused", "meshlens runs no rollout engine"
			return
		}
		r, err := a.rollbacks.Rollback(ctx, tns, name, "alertmanager", reason)
		switch {
		case errors.Is(err, rollout.ErrNotFound):
			res.Outcome, res.Message = "unknown rollout", fmt.Sprintf("no rollout %s", t)
		case errors.Is(err, rollout.ErrTransition):
			res.Outcome, res.Message = "refused", err.Error()
		case errors.Is(err, rollout.ErrNotLeader):
			res.Outcome, res.Message = outcomeNotLeader, err.Error()
		case err != nil:
			res.Outcome, res.Message = "refused", err.Error()
		case !r.Changed:
			res.Outcome, res.Message = "already rolled back", fmt.Sprintf("rollout %s is %s", t, r.To)
		default:
			res.Outcome, res.Message = "rolled back", fmt.Sprintf("rollout %s: %s -> %s", t, r.From, r.To)
		}
	}
}

// outcomeNotLeader: this meshlens replica does not run the rollouts.
const outcomeNotLeader = "not the leader"

func first(l map[string]string, keys ...string) string {
	for _, k := range keys {
		if v := l[k]; v != "" {
			return v
		}
	}
	return ""
}
