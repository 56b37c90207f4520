package config

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// Istio's own published config, valid and invalid, and what Istio makes of
// each object (testdata/conformance/NOTICE.md says where it comes from):
// meshlens must accept, maybe with warnings, every object of a kind
// it supports that Istio accepts, and refuse every one Istio refuses,
// unless knownDifferences says why not. Objects of kinds meshlens does not
// serve are counted apart and must be refused as unsupported.
//
// Each object is checked on its own, as Istio's validation webhook checks
// it: references to other objects are analysis, not validation.
func TestConformanceWithIstioValidation(t *testing.T) {
	cases := conformanceCases(t)
	k := testKinds(t)
	var agree, total int
	unsupported := map[string]int{}
	accepted := map[bool]int{} // by Istio's verdict, among agreements
	warned := 0
	stale := maps(knownDifferences)
	for _, c := range cases {
		refusal, warnings := meshlensVerdict(k, c.doc)
		if _, served := k.spec(c.kind); !served || !k.serves(c.kind, c.apiVersion) {
			unsupported[c.kind]++
			if want := fmt.Sprintf("unsupported kind %q", c.kind); !strings.Contains(refusal, want) {
				t.Errorf("%s: a %s must be refused as unsupported, got %q", c.source, c.kind, refusal)
			}
			continue
		}
		total++
		meshlensAccepts := refusal == ""
		if meshlensAccepts == c.istioAccepts {
			agree++
			accepted[c.istioAccepts]++
			if meshlensAccepts && warnings > 0 {
				warned++
			}
			if reason, ok := knownDifferences[c.source]; ok {
				t.Errorf("%s is listed as a known difference (%s) but meshlens agrees with Istio: remove it from the table", c.source, reason)
			}
			continue
		}
		delete(stale, c.source)
		if _, ok := knownDifferences[c.source]; ok {
			continue
		}
		if c.istioAccepts {
			t.Errorf("%s: Istio accepts this %s, meshlens refuses it: %s", c.source, c.kind, refusal)
		} else {
			t.Errorf("%s: Istio refuses this %s (%s), meshlens accepts it", c.source, c.kind, c.istioSays)
		}
	}
	for src := range stale {
		if !slices.ContainsFunc(cases, func(c conformanceCase) bool { return c.source == src }) {
			t.Errorf("known difference %s names no object of the corpus", src)
		}
	}
	var kinds []string
	for kind, n := range unsupported {
		kinds = append(kinds, fmt.Sprintf("%s %d", kind, n))
	}
	sort.Strings(kinds)
	t.Logf("agreement with Istio on supported kinds: %d/%d (%.1f%%): %d accepted as by Istio (%d of them with analysis warnings), %d refused as by Istio, %d known differences",
		agree, total, 100*float64(agree)/float64(total), accepted[true], warned, accepted[false], total-agree)
	t.Logf("unsupported kinds, refused as unsupported: %d objects (%s)", len(cases)-total, strings.Join(kinds, ", "))
}

// knownDifferences are the objects of supported kinds on which meshlens
// and Istio disagree on purpose, by source, with the reason. README.md
// ("Accepts what Istio accepts") lists them too.
var knownDifferences = map[string]string{
	"istio-docs/excluded/0003-virtualservice-ratings-bogus-weight-default.yaml": "route weights (999 and 888 here) must sum to 100 in meshlens, " +
		"where Istio refuses only a total of 0: the rollout engine, the UI and the API read weights as percentages. " +
		"istio.io shows this object as its example of an invalid one (IST0106).",
	"istio-crds/peerauth-invalid.yaml#4": "an empty portLevelMtls map ({}) decodes as no map at all: protobuf cannot tell them apart, " +
		"so Istio's webhook accepts it too; only the CRD's OpenAPI schema in the Kubernetes API server refuses it.",
}

// maps copies a map's keys into a set.
func maps[V any](m map[string]V) map[string]bool {
	out := make(map[string]bool, len(m))
	for k := range m {
		out[k] = true
	}
	return out
}

// conformanceCase is one object of the corpus and Istio's verdict on it.
type conformanceCase struct {
	source       string // file, and #N for the Nth document of a multi-document file
	kind         string
	apiVersion   string
	istioAccepts bool
	istioSays    string // why Istio refuses, when known
	doc          []byte
}

// meshlensVerdict is why meshlens refuses one document on its own ("" if
// it accepts it) and how many warnings it has.
func meshlensVerdict(k *Kinds, doc []byte) (refusal string, warnings int) {
	objs, err := k.Parse(doc)
	if err == nil {
		var ws Warnings
		ws, err = k.Validate(nil, objs)
		warnings = len(ws)
	}
	if err != nil {
		return err.Error(), 0
	}
	return "", warnings
}

const conformanceDir = "testdata/conformance"

func conformanceCases(t *testing.T) []conformanceCase {
	t.Helper()
	var out []conformanceCase
	// istio.io documentation: manifest.tsv holds Istio's verdict.
	docs := filepath.Join(conformanceDir, "istio-docs")
	for _, row := range readTSV(t, filepath.Join(docs, "manifest.tsv")) {
		out = append(out, fileCases(t, filepath.Join(docs, row["file"]), row["istio"] != "refused", "")...)
	}
	// Documents the corpus left out because Istio (or Kubernetes) refuses
	// them, but one: a page's example of an error that Istio now accepts.
	for _, row := range readTSV(t, filepath.Join(docs, "excluded", "excluded.tsv")) {
		accepts := strings.Contains(row["reason"], "current Istio validation accepts it")
		out = append(out, fileCases(t, filepath.Join(docs, "excluded", row["file"]), accepts, row["reason"])...)
	}
	// Istio's Bookinfo routing samples, valid by definition.
	files, _ := filepath.Glob(filepath.Join(conformanceDir, "bookinfo", "*.yaml"))
	for _, f := range files {
		out = append(out, fileCases(t, f, true, "")...)
	}
	// Istio's validation test data: *-valid.yaml and *-invalid.yaml, each
	// invalid document with the error Istio gives in "_err".
	files, _ = filepath.Glob(filepath.Join(conformanceDir, "istio-crds", "*.yaml"))
	for _, f := range files {
		out = append(out, fileCases(t, f, strings.HasSuffix(f, "-valid.yaml"), "")...)
	}
	if len(out) < 400 {
		t.Fatalf("only %d objects in the corpus", len(out))
	}
	return out
}

// fileCases splits a file into its documents, one case each. A top-level
// "_err" (Istio's expected error in its test data) is taken out of the
// document and kept as what Istio says.
func fileCases(t *testing.T, path string, istioAccepts bool, istioSays string) []conformanceCase {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var docs [][]byte
	for d := range documents(data) {
		if len(bytes.TrimSpace(stripComments(d))) > 0 {
			docs = append(docs, d)
		}
	}
	rel, _ := filepath.Rel(conformanceDir, path)
	var out []conformanceCase
	for i, d := range docs {
		var m map[string]any
		if err := yaml.Unmarshal(d, &m); err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
		says := istioSays
		if e, ok := m["_err"]; ok {
			says = fmt.Sprint(e)
			delete(m, "_err")
			if d, err = json.Marshal(m); err != nil {
				t.Fatal(err)
			}
		}
		src := rel
		if len(docs) > 1 {
			src = fmt.Sprintf("%s#%d", rel, i+1)
		}
		kind, _ := m["kind"].(string)
		apiVersion, _ := m["apiVersion"].(string)
		out = append(out, conformanceCase{source: src, kind: kind, apiVersion: apiVersion, istioAccepts: istioAccepts, istioSays: says, doc: d})
	}
	return out
}

func stripComments(d []byte) []byte {
	var b bytes.Buffer
	for _, l := range bytes.Split(d, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(l), []byte("#")) {
			b.Write(l)
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

// readTSV reads a tab-separated file with a header line into rows by
// column name.
func readTSV(t *testing.T, path string) []map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var header []string
	var rows []map[string]string
	for sc.Scan() {
		cols := strings.Split(sc.Text(), "\t")
		if header == nil {
			header = cols
			continue
		}
		row := map[string]string{}
		for i, c := range cols {
			if i < len(header) {
				row[header[i]] = c
			}
		}
		rows = append(rows, row)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(rows) == 0 {
		t.Fatal(errors.New(path + " has no rows"))
	}
	return rows
}
