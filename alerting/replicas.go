package alerting

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"

	"github.com/labstack/echo/v4"

	"github.com/meshlens/meshlens/graph"
)

// Peers reads the other meshlens replicas (replicas.Replicas).
type Peers interface {
	// Read asks every other replica for path and hands each answer to use
	// (whose bytes are reused once use returns); it returns the replicas
	// that did not answer.
	Read(ctx context.Context, path string, q url.Values, use func(peer string, body []byte) error) []graph.MissingReplica
	// PeerRoute serves a route the others Read.
	PeerRoute(g *echo.Group, path string, h echo.HandlerFunc)
}

// replicaAlertsPath is where replicas read each other's alerts.
const replicaAlertsPath = "/replica/alerts"

// ReplicaAlerts is one replica's alerts as the others read them: whether it
// evaluates the rules now (exactly one replica does), and what fires on it.
type ReplicaAlerts struct {
	Evaluating bool          `json:"evaluating"`
	Alerts     []ActiveAlert `json:"alerts"`
}

func (a *Alerting) setEvaluating(on bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.evaluating = on
}

// Own is this replica's alerts.
func (a *Alerting) Own() ReplicaAlerts {
	al := a.Firing()
	a.mu.Lock()
	defer a.mu.Unlock()
	return ReplicaAlerts{Evaluating: a.evaluating, Alerts: al}
}

// MergeAlerts is the mesh's firing alerts from every replica's: the rule
// alerts of the replicas evaluating the rules (a replica that stopped
// leading keeps stale states), Alertmanager's from all of them (its webhook
// reaches whichever replica the load balancer picks), each alert once.
func MergeAlerts(all []ReplicaAlerts) []ActiveAlert {
	out := []ActiveAlert{}
	seen := map[string]bool{}
	for _, r := range all {
		for _, al := range r.Alerts {
			if al.Source == "rule" && !r.Evaluating {
				continue
			}
			if k := al.Source + "/" + al.Fingerprint; !seen[k] {
				seen[k] = true
				out = append(out, al)
			}
		}
	}
	sortAlerts(out)
	return out
}

func sortAlerts(out []ActiveAlert) {
	sort.Slice(out, func(i, j int) bool {
		if out[i].Source != out[j].Source {
			return out[i].Source > out[j].Source
		}
		return out[i].Fingerprint < out[j].Fingerprint
	})
}

// getAlerts is GET /alerts: this replica's alerts alone, or with peers the
// whole mesh's, partial (naming them) when some did not answer.
func (a *Alerting) getAlerts(c echo.Context) error {
	own := a.Own()
	if a.opts.Peers == nil {
		if own.Alerts == nil {
			own.Alerts = []ActiveAlert{}
		}
		return c.JSON(http.StatusOK, FiringResponse{Alerts: own.Alerts})
	}
	all := []ReplicaAlerts{own}
	missing := a.opts.Peers.Read(c.Request().Context(), "/api/v1"+replicaAlertsPath, url.Values{}, func(_ string, body []byte) error {
		var r ReplicaAlerts
		if err := json.Unmarshal(body, &r); err != nil {
			return fmt.Errorf("alerts: %w", err)
		}
		all = append(all, r)
		return nil
	})
	return c.JSON(http.StatusOK, FiringResponse{Alerts: MergeAlerts(all), Partial: len(missing) > 0, Missing: missing})
}
