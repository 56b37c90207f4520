package sbomtest

import (
	"bytes"
	"debug/buildinfo"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// bom is the part of a CycloneDX document the checks read.
type bom struct {
	BOMFormat   string `json:"bomFormat"`
	SpecVersion string `json:"specVersion"`
	Metadata    struct {
		Tools     json.RawMessage `json:"tools"`
		Component component       `json:"component"`
	} `json:"metadata"`
	Components []component `json:"components"`
}

type component struct {
	Type       string      `json:"type"`
	Name       string      `json:"name"`
	Group      string      `json:"group"`
	Version    string      `json:"version"`
	PURL       string      `json:"purl"`
	Components []component `json:"components"`
}

func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// sbomDir is where `make sbom` wrote the SBOMs (make test-sbom sets it).
func sbomDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("MESHLENS_TEST_SBOM_DIR")
	if dir == "" {
		t.Skip("MESHLENS_TEST_SBOM_DIR is not set: `make test-sbom` (part of make test) runs make sbom and this test")
	}
	return dir
}

// validate checks doc against CycloneDX's JSON schema of its version and
// returns it decoded.
func validate(t *testing.T, path string) bom {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("make sbom wrote no %s: %v", filepath.Base(path), err)
	}
	var b bom
	if err := json.Unmarshal(data, &b); err != nil {
		t.Fatalf("%s is not JSON: %v", path, err)
	}
	if b.BOMFormat != "CycloneDX" || b.SpecVersion != "1.6" {
		t.Fatalf("%s: bomFormat %q specVersion %q, want CycloneDX 1.6", path, b.BOMFormat, b.SpecVersion)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	for _, name := range []string{"bom-1.6.schema.json", "spdx.schema.json", "jsf-0.82.schema.json"} {
		f, err := os.Open(filepath.Join("testdata", "schema", name))
		if err != nil {
			t.Fatal(err)
		}
		doc, err := jsonschema.UnmarshalJSON(f)
		f.Close()
		if err != nil {
			t.Fatalf("schema %s: %v", name, err)
		}
		if err := c.AddResource("http://cyclonedx.org/schema/"+name, doc); err != nil {
			t.Fatal(err)
		}
	}
	sch, err := c.Compile("http://cyclonedx.org/schema/bom-1.6.schema.json")
	if err != nil {
		t.Fatalf("compile CycloneDX 1.6 schema: %v", err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if err := sch.Validate(inst); err != nil {
		t.Fatalf("%s is not valid CycloneDX 1.6: %v", path, err)
	}
	return b
}

// pinned is the version the Makefile pins a tool at (NAME := module@version).
func pinned(t *testing.T, variable string) string {
	t.Helper()
	mk, err := os.ReadFile(filepath.Join(repoRoot(t), "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^` + variable + ` := \S+@(\S+)$`).FindSubmatch(mk)
	if m == nil {
		t.Fatalf("the Makefile pins no version in %s", variable)
	}
	return string(m[1])
}

// madeBy checks the SBOM names the tool that made it at the pinned version.
func madeBy(t *testing.T, b bom, tool, version string) {
	t.Helper()
	var legacy []struct{ Name, Version string }
	var current struct {
		Components []struct{ Name, Version string } `json:"components"`
	}
	found := false
	if json.Unmarshal(b.Metadata.Tools, &legacy) == nil {
		for _, tl := range legacy {
			found = found || (tl.Name == tool && strings.TrimPrefix(tl.Version, "v") == strings.TrimPrefix(version, "v"))
		}
	} else if json.Unmarshal(b.Metadata.Tools, &current) == nil {
		for _, tl := range current.Components {
			found = found || (tl.Name == tool && strings.TrimPrefix(tl.Version, "v") == strings.TrimPrefix(version, "v"))
		}
	}
	if !found {
		t.Errorf("the SBOM was not made by %s %s (the Makefile's pin): tools %s", tool, version, b.Metadata.Tools)
	}
}

func flatten(cs []component, out map[string]component) {
	for _, c := range cs {
		key := c.Name
		if c.Group != "" {
			key = c.Group + "/" + c.Name
		}
		out[key] = c
		flatten(c.Components, out)
	}
}

// TestSBOMOfTheBinaryNamesEveryLinkedModule: bin/meshlens' SBOM is valid
// CycloneDX, made by the pinned cyclonedx-gomod, is about meshlens' main
// module, and names every module the binary's build information lists
// (clickhouse-go, go-control-plane, ...) at the version linked.
func TestSBOMOfTheBinaryNamesEveryLinkedModule(t *testing.T) {
	dir := sbomDir(t)
	b := validate(t, filepath.Join(dir, "meshlens.cdx.json"))
	madeBy(t, b, "cyclonedx-gomod", pinned(t, "CYCLONEDX_GOMOD"))
	if b.Metadata.Component.Name != "github.com/meshlens/meshlens" {
		t.Errorf("the SBOM is about %q, want github.com/meshlens/meshlens", b.Metadata.Component.Name)
	}
	bi, err := buildinfo.ReadFile(filepath.Join(repoRoot(t), "bin", "meshlens"))
	if err != nil {
		t.Fatalf("bin/meshlens (make sbom builds it): %v", err)
	}
	got := map[string]component{}
	flatten(b.Components, got)
	for _, want := range []string{"github.com/ClickHouse/clickhouse-go/v2", "github.com/envoyproxy/go-control-plane", "google.golang.org/grpc", "istio.io/api"} {
		if _, ok := got[want]; !ok {
			t.Errorf("the SBOM does not name %s", want)
		}
	}
	missing := 0
	for _, d := range bi.Deps {
		if d.Replace != nil {
			d = d.Replace
		}
		c, ok := got[d.Path]
		switch {
		case !ok:
			missing++
			if missing <= 10 {
				t.Errorf("module %s %s, linked into bin/meshlens, is not in the SBOM", d.Path, d.Version)
			}
		case c.Version != d.Version:
			t.Errorf("module %s: the SBOM says %s, bin/meshlens links %s", d.Path, c.Version, d.Version)
		case c.PURL != fmt.Sprintf("pkg:golang/%s@%s?type=module", d.Path, d.Version) && !strings.HasPrefix(c.PURL, fmt.Sprintf("pkg:golang/%s@%s", d.Path, d.Version)):
			t.Errorf("module %s: purl %q", d.Path, c.PURL)
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d linked modules missing from the SBOM", missing, len(bi.Deps))
	}
	t.Logf("meshlens.cdx.json: valid CycloneDX 1.6, %d modules linked into bin/meshlens, all named with their versions", len(bi.Deps))
}

// TestSBOMOfTheUINamesEveryProductionPackage: the UI's SBOM is valid
// CycloneDX, made by the pinned cyclonedx-npm, and names every package of
// ui/web/package-lock.json that ships (not dev-only: cytoscape, preact,
// ...) at the locked version, and none of the dev-only ones.
func TestSBOMOfTheUINamesEveryProductionPackage(t *testing.T) {
	dir := sbomDir(t)
	b := validate(t, filepath.Join(dir, "ui.cdx.json"))
	madeBy(t, b, "cyclonedx-npm", pinned(t, "CYCLONEDX_NPM"))
	lockData, err := os.ReadFile(filepath.Join(repoRoot(t), "ui", "web", "package-lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	var lock struct {
		Packages map[string]struct {
			Version string `json:"version"`
			Dev     bool   `json:"dev"`
		} `json:"packages"`
	}
	if err := json.Unmarshal(lockData, &lock); err != nil {
		t.Fatalf("ui/web/package-lock.json: %v", err)
	}
	got := map[string]component{}
	flatten(b.Components, got)
	for _, want := range []string{"cytoscape", "preact"} {
		if _, ok := got[want]; !ok {
			t.Errorf("the SBOM does not name %s", want)
		}
	}
	prod := 0
	for key, p := range lock.Packages {
		i := strings.LastIndex(key, "node_modules/")
		if i < 0 {
			continue // the project itself
		}
		name := key[i+len("node_modules/"):]
		c, ok := got[name]
		switch {
		case p.Dev && ok && c.Version == p.Version:
			t.Errorf("dev-only package %s %s is in the SBOM", name, p.Version)
		case p.Dev:
		case !ok:
			t.Errorf("package %s %s, locked for production, is not in the SBOM", name, p.Version)
		case c.Version != p.Version:
			t.Errorf("package %s: the SBOM says %s, package-lock.json %s", name, c.Version, p.Version)
		default:
			prod++
		}
	}
	if prod == 0 {
		t.Error("no production package of package-lock.json is in the SBOM")
	}
	t.Logf("ui.cdx.json: valid CycloneDX 1.6, %d production npm packages named with their locked versions", prod)
}
