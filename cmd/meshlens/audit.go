package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/meshlens/meshlens/store"
)

// runAudit is `meshlens audit [KIND [NAME]] [-n NS] [--since 1h] [--limit N]
// [--diff] [-o table|json]`: the audit trail, newest first.
func runAudit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("audit", "audit [KIND [NAME]] [-n NAMESPACE] [--since 1h|RFC3339] [--until ...] [--actor WHO] [--limit N] [--diff] [-o table|json]", stderr)
	ns := fs.String("n", "", "namespace (default: all)")
	since := fs.String("since", "", "only changes since: a duration ago (1h) or an RFC 3339 time")
	until := fs.String("until", "", "only changes before: a duration ago or an RFC 3339 time")
	actor := fs.String("actor", "", `only changes by this actor (e.g. "token:1a2b3c4d (operator)", "dir:echo.yaml", "judge")`)
	limit := fs.Int("limit", 50, "at most this many changes (1 to 10000)")
	diff := fs.Bool("diff", false, "print each change's diff under it")
	output := fs.String("o", "table", "output format: table or json")
	var cf clientFlags
	cf.register(fs)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return flagErr(err)
	}
	if len(pos) > 2 || (*output != "table" && *output != "json") {
		fs.Usage()
		return errUsage
	}
	q := url.Values{"limit": {strconv.Itoa(*limit)}}
	for k, v := range map[string]string{"namespace": *ns, "since": *since, "until": *until, "actor": *actor} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if len(pos) > 0 {
		q.Set("kind", pos[0])
	}
	if len(pos) > 1 {
		q.Set("name", pos[1])
	}
	var answer struct {
		Entries []store.AuditRow `json:"entries"`
	}
	if err := cf.client().do(ctx, "GET", "/audit?"+q.Encode(), nil, &answer, stderr); err != nil {
		return err
	}
	if *output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(answer.Entries)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tACTION\tOBJECT\tACTOR\tFROM\tCONFIG VERSION\tMESSAGE")
	for _, e := range answer.Entries {
		ver := ""
		if e.ConfigVersion > 0 {
			ver = strconv.FormatUint(e.ConfigVersion, 10)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s/%s/%s\t%s\t%s\t%s\t%s\n", e.Time.Local().Format(time.DateTime), e.Action, e.Kind, e.Namespace, e.Name,
			e.Actor, e.Remote, ver, e.Message)
		if *diff && e.Diff != "" {
			tw.Flush()
			for _, l := range strings.Split(strings.TrimRight(e.Diff, "\n"), "\n") {
				fmt.Fprintln(stdout, "    "+l)
			}
		}
	}
	return tw.Flush()
}
