package plugin

import (
	"context"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/data"
)

// maxAnnotatedRollouts bounds the rollouts read for one annotation query.
const maxAnnotatedRollouts = 100

// annotations gives the events of meshlens' rollouts in the time range:
// transitions (who moved it: judge, operator, alert), verdicts, and the
// config pushes of their weights (configVersion, weights, who); and every
// config change from meshlens' audit trail (who applied or deleted what,
// from where, the config version it produced); as Grafana annotations
// (time, title, text, tags).
func (d *Datasource) annotations(ctx context.Context, q Query, tr backend.TimeRange) (data.Frames, error) {
	w, err := windowOf(tr, d.now())
	if err != nil {
		return nil, err
	}
	from, to := w.since(), w.end()
	if w.Live {
		to = d.now()
	}
	var list struct {
		Items []apiRolloutRef `json:"items"`
	}
	if err := d.client.Get(ctx, "/rollouts", nil, &list); err != nil {
		return nil, fmt.Errorf("rollout annotations: %w", err)
	}
	var refs []apiRolloutRef
	for _, r := range list.Items {
		if q.Namespace == "" || r.Namespace == q.Namespace {
			refs = append(refs, r)
		}
	}
	var notices []data.Notice
	if len(refs) > maxAnnotatedRollouts {
		notices = append(notices, data.Notice{Severity: data.NoticeSeverityWarning, Text: fmt.Sprintf("%d rollouts match; the annotations show the first %d: filter by namespace or service", len(refs), maxAnnotatedRollouts)})
		refs = refs[:maxAnnotatedRollouts]
	}
	type row struct {
		at                time.Time
		title, text, tags string
	}
	var rows []row
	for _, ref := range refs {
		var r apiRollout
		if err := d.client.Get(ctx, "/rollouts/"+url.PathEscape(ref.Namespace)+"/"+url.PathEscape(ref.Name), nil, &r); err != nil {
			return nil, fmt.Errorf("rollout annotations: rollout %s/%s: %w", ref.Namespace, ref.Name, err)
		}
		if q.Service != "" && r.Service != q.Service {
			continue
		}
		name := r.Namespace + "/" + r.Name
		for _, e := range r.History {
			if e.At.Before(from) || e.At.After(to) {
				continue
			}
			title, text := describe(r, e)
			tags := []string{"meshlens", "rollout", name, e.Type}
			if e.Source != "" {
				tags = append(tags, e.Source)
			}
			rows = append(rows, row{e.At.UTC(), title, text, strings.Join(tags, ",")})
		}
	}
	changes, err := d.configChanges(ctx, q, from, to)
	if err != nil {
		// The rollouts' events still stand; say why the changes are missing.
		notices = append(notices, data.Notice{Severity: data.NoticeSeverityWarning, Text: "config changes are not shown: " + err.Error()})
	}
	for _, e := range changes {
		title, text := describeChange(e)
		tags := []string{"meshlens", "config", e.Kind, e.Action, e.Source}
		rows = append(rows, row{e.Time.UTC(), title, text, strings.Join(tags, ",")})
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].at.Before(rows[j].at) })
	n := len(rows)
	at, title, text, tags := make([]time.Time, n), make([]string, n), make([]string, n), make([]string, n)
	for i, r := range rows {
		at[i], title[i], text[i], tags[i] = r.at, r.title, r.text, r.tags
	}
	f := data.NewFrame("annotations",
		data.NewField("time", nil, at),
		data.NewField("title", nil, title),
		data.NewField("text", nil, text),
		data.NewField("tags", nil, tags),
	)
	f.Meta = &data.FrameMeta{Notices: append(w.notices(), notices...)}
	return data.Frames{f}, nil
}

// describe says what happened, who did it and with what numbers.
func describe(r apiRollout, e apiRolloutEvent) (title, text string) {
	name := r.Namespace + "/" + r.Name
	who := e.Source
	if who == "" {
		who = "engine"
	}
	var b strings.Builder
	switch e.Type {
	case "transition":
		title = fmt.Sprintf("rollout %s: %s → %s", name, e.From, e.To)
		fmt.Fprintf(&b, "%s by %s", e.Event, who)
	case "push":
		title = fmt.Sprintf("rollout %s: weights pushed", name)
		fmt.Fprintf(&b, "by %s", who)
		if w := e.Weights; w != nil {
			fmt.Fprintf(&b, ": %s %v%%, %s %v%%", versionName(r.StableVersion), w["stable"], versionName(r.CandidateVersion), w["candidate"])
		}
		if e.ConfigVersion != 0 {
			fmt.Fprintf(&b, " (config version %d)", e.ConfigVersion)
		}
		if e.Revision != "" {
			fmt.Fprintf(&b, " (resourceVersion %s)", e.Revision)
		}
		if e.Error != "" {
			b.WriteString("; failed: " + e.Error)
		}
	case "verdict":
		result := "verdict"
		var reasons []string
		if e.Verdict != nil {
			result, reasons = e.Verdict.Result, e.Verdict.Reasons
		}
		title = fmt.Sprintf("rollout %s: %s", name, result)
		if e.Step != nil {
			fmt.Fprintf(&b, "step %d", *e.Step)
		}
		if len(reasons) > 0 {
			b.WriteString(": " + strings.Join(reasons, "; "))
		}
	default:
		title = fmt.Sprintf("rollout %s: %s", name, e.Type)
	}
	if e.Message != "" {
		b.WriteString(" — " + e.Message)
	}
	return title, strings.TrimSpace(b.String())
}

// maxAnnotatedChanges bounds the audit entries read for one annotation query.
const maxAnnotatedChanges = 1000

// apiAuditEntry is one entry of GET /api/v1/audit.
type apiAuditEntry struct {
	Time          time.Time `json:"time"`
	Actor         string    `json:"actor"`
	Remote        string    `json:"remote"`
	Source        string    `json:"source"`
	Action        string    `json:"action"`
	Kind          string    `json:"kind"`
	Namespace     string    `json:"namespace"`
	Name          string    `json:"name"`
	ConfigVersion int64     `json:"configVersion"`
	Diff          string    `json:"diff"`
	Message       string    `json:"message"`
}

// configChanges are the config changes (not rollout transitions, which the
// rollouts' own history gives) of the audit trail in [from, to].
func (d *Datasource) configChanges(ctx context.Context, q Query, from, to time.Time) ([]apiAuditEntry, error) {
	params := url.Values{"since": {from.UTC().Format(time.RFC3339)}, "until": {to.UTC().Format(time.RFC3339)}, "limit": {fmt.Sprint(maxAnnotatedChanges)}}
	if q.Namespace != "" {
		params.Set("namespace", q.Namespace)
	}
	var list struct {
		Entries []apiAuditEntry `json:"entries"`
	}
	if err := d.client.Get(ctx, "/audit", params, &list); err != nil {
		return nil, err
	}
	var out []apiAuditEntry
	for _, e := range list.Entries {
		if e.Source != "rollout" {
			out = append(out, e)
		}
	}
	return out, nil
}

// describeChange says what a config change did, who made it and from where.
func describeChange(e apiAuditEntry) (title, text string) {
	done := map[string]string{"create": "created", "update": "updated", "delete": "deleted"}[e.Action]
	if done == "" {
		done = e.Action
	}
	title = fmt.Sprintf("config: %s %s/%s %s", e.Kind, e.Namespace, e.Name, done)
	var b strings.Builder
	fmt.Fprintf(&b, "by %s", e.Actor)
	if e.Remote != "" {
		fmt.Fprintf(&b, " from %s", e.Remote)
	}
	fmt.Fprintf(&b, " (%s", e.Source)
	if e.ConfigVersion != 0 {
		fmt.Fprintf(&b, ", config version %d", e.ConfigVersion)
	}
	b.WriteString(")")
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.Diff != "" {
		lines := strings.Split(strings.TrimRight(e.Diff, "\n"), "\n")
		if len(lines) > 20 {
			lines = append(lines[:20], fmt.Sprintf("… %d more lines", len(lines)-20))
		}
		b.WriteString("\n" + strings.Join(lines, "\n"))
	}
	return title, b.String()
}
