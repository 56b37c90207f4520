package config

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Each file in testdata/warnings is a batch applied on top of the bookinfo
// examples. It must be accepted, and its "# warn: CODE | OBJECT | FIELD |
// MESSAGE" lines list exactly the warnings expected (message by
// substring); a file without them expects none.
func TestCrossObjectFindingsAreWarnings(t *testing.T) {
	files, err := filepath.Glob("testdata/warnings/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			s := exampleStore(t)
			objs, err := s.Kinds().Parse(data)
			if err != nil {
				t.Fatal(err)
			}
			dry, err := s.Check(objs)
			if err != nil {
				t.Fatalf("dry run refused the batch: %v", err)
			}
			before := s.Snapshot().Version
			sn, got, err := s.Apply(context.Background(), objs)
			if err != nil {
				t.Fatalf("batch refused: %v", err)
			}
			if sn.Version != before+1 {
				t.Fatalf("version %d after %d", sn.Version, before)
			}
			matchWarnings(t, got, parseWarns(t, data))
			if len(dry) != len(got) {
				t.Errorf("dry run gave %d warnings, apply %d", len(dry), len(got))
			}
		})
	}
}

func parseWarns(t *testing.T, data []byte) []Warning {
	t.Helper()
	var wants []Warning
	for _, line := range strings.Split(string(data), "\n") {
		rest, ok := strings.CutPrefix(line, "# warn: ")
		if !ok {
			continue
		}
		parts := strings.SplitN(rest, "|", 4)
		if len(parts) != 4 {
			t.Fatalf("bad warn line %q", line)
		}
		wants = append(wants, Warning{Code: strings.TrimSpace(parts[0]), Object: strings.TrimSpace(parts[1]),
			Field: strings.TrimSpace(parts[2]), Message: strings.TrimSpace(parts[3])})
	}
	return wants
}

// matchWarnings checks got holds exactly wants (messages by substring).
func matchWarnings(t *testing.T, got Warnings, wants []Warning) {
	t.Helper()
	used := make([]bool, len(got))
	for _, w := range wants {
		found := false
		for i, g := range got {
			if !used[i] && g.Code == w.Code && g.Object == w.Object && g.Field == w.Field && strings.Contains(g.Message, w.Message) {
				used[i], found = true, true
				break
			}
		}
		if !found {
			t.Errorf("missing warning %s | %s | %s | %s", w.Code, w.Object, w.Field, w.Message)
		}
	}
	for i, g := range got {
		if !used[i] {
			t.Errorf("unexpected warning %s | %s | %s | %s", g.Code, g.Object, g.Field, g.Message)
		}
	}
}

// What Istio's webhook refuses is refused; what `istioctl analyze` reports
// is a warning. Each case is one VirtualService or DestinationRule applied
// to an empty store, with only a ServiceEntry for host "known".
func TestErrorsVersusWarnings(t *testing.T) {
	const known = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: known, namespace: shop}
spec:
  hosts: [known]
  ports: [{number: 80, name: http, protocol: HTTP}]
`
	vs := func(spec string) string {
		return "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v, namespace: shop}\nspec:\n" + spec
	}
	dr := func(spec string) string {
		return "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d, namespace: shop}\nspec:\n" + spec
	}
	cases := []struct {
		name      string
		doc       string
		wantError string // field of the expected error; "" = accepted
		wantWarn  []string
	}{
		{"valid route", vs("  hosts: [known]\n  http: [{route: [{destination: {host: known}}]}]\n"), "", nil},
		{"unknown destination host warns", vs("  hosts: [known]\n  http: [{route: [{destination: {host: nowhere}}]}]\n"), "", []string{CodeReferencedResourceNotFound}},
		{"unknown subset warns", vs("  hosts: [known]\n  http: [{route: [{destination: {host: known, subset: v1}}]}]\n"), "", []string{CodeReferencedResourceNotFound}},
		{"unknown mirror host warns", vs("  hosts: [known]\n  http: [{route: [{destination: {host: known}}], mirror: {host: shadow}}]\n"), "", []string{CodeReferencedResourceNotFound}},
		{"routed host itself need not exist", vs("  hosts: [anything.example.com]\n  http: [{route: [{destination: {host: known}}]}]\n"), "", nil},
		{"DestinationRule for unknown host warns", dr("  host: nowhere\n"), "", []string{CodeUnknownDestinationRuleHost}},
		{"wildcard DestinationRule does not warn", dr("  host: \"*.example.com\"\n"), "", nil},
		{"weights must sum to 100", vs("  hosts: [known]\n  http: [{route: [{destination: {host: known}, weight: 50}, {destination: {host: nowhere}, weight: 10}]}]\n"), "http[0].route[1].weight", nil},
		{"malformed host refuses", vs("  hosts: [known]\n  http: [{route: [{destination: {host: \"bad host\"}}]}]\n"), "http[0].route[0].destination.host", nil},
		{"no routes refuses", vs("  hosts: [known]\n"), "", nil},
		{"subset name must be a DNS label", dr("  host: known\n  subsets: [{name: V_1}]\n"), "subsets[0].name", nil},
		{"negative weight refuses", vs("  hosts: [known]\n  http: [{route: [{destination: {host: known}, weight: -1}, {destination: {host: known}, weight: 101}]}]\n"), "http[0].route[0].weight", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := openStore(t, t.TempDir())
			if _, _, err := s.Apply(context.Background(), parse(t, s, known)); err != nil {
				t.Fatal(err)
			}
			objs := parse(t, s, c.doc)
			_, ws, err := s.Apply(context.Background(), objs)
			refused := c.wantError != "" || strings.Contains(c.name, "refuses")
			if refused {
				var fe FieldErrors
				if !errors.As(err, &fe) {
					t.Fatalf("accepted (warnings %v), want refused", ws)
				}
				if c.wantError != "" && fe[0].Field != c.wantError {
					t.Fatalf("error %v, want one on %s", err, c.wantError)
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			var codes []string
			for _, w := range ws {
				codes = append(codes, w.Code)
			}
			if strings.Join(codes, ",") != strings.Join(c.wantWarn, ",") {
				t.Fatalf("warnings %v, want codes %v", ws, c.wantWarn)
			}
		})
	}
}
