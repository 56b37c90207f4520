package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/meshlens/meshlens/controlplane/config"
	"github.com/meshlens/meshlens/rollout"
)

// runRollout is `meshlens rollout status|promote|abort|pause|resume NAME
// [-n NS]`. `status` without NAME lists every rollout.
func runRollout(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("rollout", "rollout status|promote|abort|pause|resume NAME [-n NAMESPACE] [-o table|json]", stderr)
	ns := fs.String("n", config.DefaultNamespace, "namespace")
	output := fs.String("o", "table", "output format of status: table or json")
	history := fs.Int("history", 15, "status: how many recent history entries to show")
	var cf clientFlags
	cf.register(fs)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return flagErr(err)
	}
	if len(pos) < 1 || len(pos) > 2 || (pos[0] != "status" && len(pos) != 2) {
		fs.Usage()
		return errUsage
	}
	if *output != "table" && *output != "json" {
		return fmt.Errorf("unknown output format %q; use table or json", *output)
	}
	c := cf.client()
	action := pos[0]
	switch action {
	case "status":
		if len(pos) == 1 {
			var list rollout.ListResponse
			if err := c.do(ctx, "GET", "/rollouts", nil, &list, stderr); err != nil {
				return err
			}
			if *output == "json" {
				return writeJSON(stdout, list)
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAMESPACE\tNAME\tSERVICE\tSTRATEGY\tSTATE\tSTEP\tSTABLE\tCANDIDATE\tMESSAGE")
			for _, st := range list.Items {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s=%d%%\t%s=%d%%\t%s\n", st.Namespace, st.Name, st.Service, st.Strategy,
					st.State, stepText(st), st.Stable, st.Weights.Stable, st.Candidate, st.Weights.Candidate, st.Message)
			}
			return tw.Flush()
		}
		var st rollout.Status
		if err := c.do(ctx, "GET", "/rollouts/"+pathEscape(*ns)+"/"+pathEscape(pos[1]), nil, &st, stderr); err != nil {
			return err
		}
		if *output == "json" {
			return writeJSON(stdout, st)
		}
		printRolloutStatus(stdout, st, *history)
		return nil
	case "promote", "abort", "pause", "resume":
		var res rollout.ActionResult
		if err := c.do(ctx, "POST", "/rollouts/"+pathEscape(*ns)+"/"+pathEscape(pos[1])+"/"+action, nil, &res, stderr); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "rollout %s: %s -> %s\n", res.Rollout, res.From, res.To)
		return nil
	default:
		fmt.Fprintf(stderr, "meshlens rollout: unknown action %q\n", action)
		fs.Usage()
		return errUsage
	}
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func stepText(st rollout.Status) string {
	if len(st.Steps) == 0 {
		return "-"
	}
	return fmt.Sprintf("%d/%d", st.Step+1, len(st.Steps))
}

func printRolloutStatus(w io.Writer, st rollout.Status, n int) {
	fmt.Fprintf(w, "Rollout:    %s/%s (%s of %s)\n", st.Namespace, st.Name, st.Strategy, st.Service)
	fmt.Fprintf(w, "State:      %s\n", st.State)
	if st.Message != "" {
		fmt.Fprintf(w, "Message:    %s\n", st.Message)
	}
	if len(st.Steps) > 0 {
		fmt.Fprintf(w, "Step:       %s %v (since %s)\n", stepText(st), st.Steps, st.StepStartedAt.Format(time.RFC3339))
	}
	fmt.Fprintf(w, "Weights:    %s (%s) %d%%, %s (%s) %d%%", st.Stable, st.StableVersion, st.Weights.Stable,
		st.Candidate, st.CandidateVersion, st.Weights.Candidate)
	if st.Weights.Matched {
		fmt.Fprint(w, "; matching requests -> "+st.Candidate)
	}
	fmt.Fprintln(w)
	if v := st.LastVerdict; v != nil {
		fmt.Fprintf(w, "Verdict:    %s at %s: %s\n", v.Result, v.At.Format(time.RFC3339), strings.Join(v.Reasons, "; "))
		fmt.Fprintf(w, "            candidate %d req, error rate %.4f, p99 %.1f ms; stable %d req, error rate %.4f, p99 %.1f ms\n",
			v.Candidate.Requests, v.Candidate.ErrorRate, v.Candidate.P99Ms, v.Stable.Requests, v.Stable.ErrorRate, v.Stable.P99Ms)
		fmt.Fprintf(w, "            error z=%.2f p=%.3g; latency U=%.0f p=%.3g\n", v.ErrorZ, v.ErrorP, v.LatencyU, v.LatencyP)
	}
	h := st.History
	if len(h) > n {
		h = h[len(h)-n:]
	}
	if len(h) > 0 {
		fmt.Fprintln(w, "History:")
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, e := range h {
		at := e.At.Format("15:04:05.000")
		switch e.Type {
		case "verdict":
			fmt.Fprintf(tw, "  %s\tverdict\tstep %d\t%s\t%s\n", at, e.Step+1, e.Verdict.Result, strings.Join(e.Verdict.Reasons, "; "))
		case "push":
			detail := fmt.Sprintf("stable %d%% candidate %d%% (config version %d)", e.Weights.Stable, e.Weights.Candidate, e.ConfigVersion)
			if e.Error != "" {
				detail = "FAILED: " + e.Error
			}
			fmt.Fprintf(tw, "  %s\tpush\tstep %d\t\t%s\n", at, e.Step+1, detail)
		default:
			fmt.Fprintf(tw, "  %s\t%s\t%s -> %s\t%s\t%s\n", at, e.Event, e.From, e.To, e.Source, e.Message)
		}
	}
	tw.Flush()
}
