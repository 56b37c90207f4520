package config

import (
	"context"
	"testing"

	networking "istio.io/api/networking/v1"
	security "istio.io/api/security/v1"
)

// Every example is applied as written through the real parse, validate and
// store path, one file at a time, and survives a restart.
func TestExamplesApplyAsWritten(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	kinds := map[string]bool{}
	for _, f := range exampleFiles {
		objs, err := s.Kinds().Parse(readExample(t, f))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if len(objs) == 0 {
			t.Fatalf("%s: no objects", f)
		}
		if _, _, err := s.Apply(context.Background(), objs); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, o := range objs {
			kinds[o.Kind] = true
		}
	}
	for _, spec := range IstioKinds(IstioOptions{}) {
		if !kinds[spec.Kind] {
			t.Errorf("no example of %s", spec.Kind)
		}
	}
	vs, ok := s.Get("virtualservice", "bookinfo", "reviews")
	if !ok {
		t.Fatal("reviews VirtualService missing")
	}
	route := vs.Spec.(*networking.VirtualService).GetHttp()[1].GetRoute()
	if route[0].GetWeight() != 80 || route[1].GetDestination().GetSubset() != "v3" {
		t.Errorf("reviews canary route decoded wrong: %v", route)
	}
	if got := vs.Spec.(*networking.VirtualService).GetHttp()[1].GetRetries().GetPerTryTimeout().AsDuration().String(); got != "500ms" {
		t.Errorf("perTryTimeout = %s, want 500ms", got)
	}
	pa, _ := s.Get("PeerAuthentication", "bookinfo", "ratings")
	if m := pa.Spec.(*security.PeerAuthentication).GetPortLevelMtls()[9080].GetMode(); m != security.PeerAuthentication_MutualTLS_PERMISSIVE {
		t.Errorf("port 9080 mode = %v", m)
	}

	reopened := openStore(t, dir)
	if got, want := len(reopened.Snapshot().Objects), len(s.Snapshot().Objects); got != want {
		t.Fatalf("after restart %d objects, want %d", got, want)
	}
	if reopened.Snapshot().Version != s.Snapshot().Version {
		t.Errorf("after restart version %d, want %d", reopened.Snapshot().Version, s.Snapshot().Version)
	}
	for i, o := range s.Snapshot().Objects {
		if !sameObject(o, reopened.Snapshot().Objects[i]) {
			t.Errorf("%s changed across restart", o.Key())
		}
	}
}
