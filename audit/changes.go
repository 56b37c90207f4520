package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/meshlens/meshlens/auth"
	"github.com/meshlens/meshlens/controlplane/config"
	"github.com/meshlens/meshlens/rollout"
)

// ConfigChange records one accepted config change: an entry per object,
// with its diff. Who made it is the request's actor (API) or the object's
// origin (a config file, Kubernetes). Give it to config.Store.SetAuditor.
func (l *Log) ConfigChange(ctx context.Context, c config.Change) {
	actor, hasActor := auth.ActorOf(ctx)
	for _, oc := range c.Objects {
		o := oc.After
		if o == nil {
			o = oc.Before
		}
		source, _, _ := strings.Cut(oc.Origin, ":")
		e := Entry{Source: source, Action: oc.Action, Kind: o.Kind, Namespace: o.Meta.Namespace, Name: o.Meta.Name,
			ConfigVersion: c.Version, Diff: diffObjects(oc.Before, oc.After), Actor: oc.Origin}
		if hasActor {
			e.Actor, e.Remote = actor.Who, actor.From
		}
		l.Record(e)
	}
}

// RolloutTransition records a rollout transition, or a push of its routes
// (action "push", with the weights and the config version it produced, or
// the Kubernetes object's resourceVersion). Who: the operator whose
// request made it, else its source (the judge, "alert:RULE",
// "alertmanager", the engine). Give it to rollout.Options.Audit.
func (l *Log) RolloutTransition(ctx context.Context, ns, name string, tr rollout.Entry) {
	e := Entry{Time: tr.At, Source: "rollout", Action: string(tr.Event), Kind: rollout.Kind, Namespace: ns, Name: name,
		Actor: tr.Source, Diff: fmt.Sprintf("state: %s -> %s (step %d)", tr.From, tr.To, tr.Step), Message: tr.Message}
	if tr.Type == "push" && tr.Weights != nil {
		e.Action, e.Actor, e.ConfigVersion = "push", "engine", tr.ConfigVersion
		e.Diff = fmt.Sprintf("weights: stable %d%%, candidate %d%% (step %d)", tr.Weights.Stable, tr.Weights.Candidate, tr.Step)
		if tr.Revision != "" {
			e.Message = "resourceVersion " + tr.Revision
		}
	}
	if a, ok := auth.ActorOf(ctx); ok {
		e.Actor, e.Remote = a.Who, a.From
	}
	l.Record(e)
}

// diffObjects is a line diff of the objects' YAML: "-" lines removed, "+"
// lines added, "  " lines kept.
func diffObjects(before, after *config.Object) string {
	return lineDiff(yamlLines(before), yamlLines(after))
}

func yamlLines(o *config.Object) []string {
	if o == nil {
		return nil
	}
	js, err := json.Marshal(o)
	if err != nil {
		return []string{"(not encodable: " + err.Error() + ")"}
	}
	y, err := yaml.JSONToYAML(js)
	if err != nil {
		return []string{"(not encodable: " + err.Error() + ")"}
	}
	return strings.Split(strings.TrimRight(string(y), "\n"), "\n")
}

// lineDiff is the longest-common-subsequence diff of two short texts (one
// config object each).
func lineDiff(a, b []string) string {
	n, m := len(a), len(b)
	if n*m > 1_000_000 { // too big to compare line by line: all of both
		var out strings.Builder
		for _, l := range a {
			out.WriteString("- " + l + "\n")
		}
		for _, l := range b {
			out.WriteString("+ " + l + "\n")
		}
		return out.String()
	}
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out strings.Builder
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && a[i] == b[j]:
			out.WriteString("  " + a[i] + "\n")
			i, j = i+1, j+1
		case j < m && (i == n || lcs[i][j+1] >= lcs[i+1][j]):
			out.WriteString("+ " + b[j] + "\n")
			j++
		default:
			out.WriteString("- " + a[i] + "\n")
			i++
		}
	}
	return out.String()
}
