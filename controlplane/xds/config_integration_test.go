package xds

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/meshlens/meshlens/controlplane/config"
)

// TestTranslatesConfigParserOutput runs the demo mesh's config through
// controlplane/config's own parser and validation, then through Translate:
// the two packages agree on the Spec types (a mismatch would make the
// translator silently skip objects).
func TestTranslatesConfigParserOutput(t *testing.T) {
	src, err := os.ReadFile("../../examples/bookinfo-demo.yaml")
	if err != nil {
		t.Skipf("no demo config: %v", err)
	}
	kinds, err := config.NewKinds(config.IstioKinds(config.IstioOptions{})...)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := kinds.Parse(src)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kinds.Validate(&config.Snapshot{}, objs); err != nil {
		t.Fatalf("the demo config is invalid: %v", err)
	}
	slices.SortFunc(objs, func(a, b *config.Object) int { return strings.Compare(a.Key(), b.Key()) })
	snap := &config.Snapshot{Version: 1, Objects: objs}
	var hosts []string
	for _, o := range snap.OfKind("ServiceEntry") {
		se, ok := o.Spec.(interface{ GetHosts() []string })
		if !ok {
			t.Fatalf("ServiceEntry spec is %T", o.Spec)
		}
		hosts = append(hosts, se.GetHosts()...)
	}
	if len(hosts) == 0 {
		t.Fatal("the demo config has no ServiceEntry")
	}
	for _, fl := range []Flavour{FlavourGRPC, FlavourEnvoy} {
		res, err := Translate(Input{Config: snap}, Node{ID: "it", Flavour: fl, Namespace: "bookinfo"}, DefaultOptions())
		if err != nil {
			t.Fatalf("%s: %v", fl, err)
		}
		for _, h := range hosts {
			found := false
			for _, c := range res.Clusters {
				if strings.HasSuffix(c.Name, "||"+h) {
					found = true
				}
			}
			if !found {
				t.Errorf("%s: no cluster for %s", fl, h)
			}
		}
		if fl == FlavourGRPC {
			routed := 0
			for _, rc := range res.Routes {
				for _, r := range rc.GetVirtualHosts()[0].GetRoutes() {
					if r.GetName() != "default" {
						routed++
					}
				}
			}
			if snap.OfKind("VirtualService") != nil && routed == 0 {
				t.Errorf("VirtualServices produced no routes")
			}
		}
	}
}
