package meshconfig

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/meshlens/meshlens/controlplane/config"
)

// The example file loads through --mesh-config: its two ext_authz
// providers resolve, the tracer is not an ext_authz one, and the field
// meshlens does not use is reported.
func TestExampleMeshConfigLoads(t *testing.T) {
	var f Flags
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	f.RegisterFlags(fs)
	if err := fs.Parse([]string{"--mesh-config", filepath.Join("..", "..", "examples", "meshconfig", "extension-providers.yaml")}); err != nil {
		t.Fatal(err)
	}
	p, ignored, err := f.Load()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ignored, []string{"accessLogFile"}) {
		t.Errorf("ignored %v, want [accessLogFile]", ignored)
	}
	h, ok, err := p.ExtAuthzProvider("ext-authz-http")
	if !ok || err != nil || h.HTTP == nil || h.Host != "ext-authz.auth.svc.cluster.local" || h.Namespace != "" || h.Port != 8000 || h.HTTP.GetPathPrefix() != "/check" {
		t.Errorf("ext-authz-http: %+v %v %v", h, ok, err)
	}
	g, ok, err := p.ExtAuthzProvider("ext-authz-grpc")
	if !ok || err != nil || g.GRPC == nil || g.Namespace != "auth" || g.Host != "ext-authz" || g.Port != 9000 {
		t.Errorf("ext-authz-grpc: %+v %v %v", g, ok, err)
	}
	if _, ok, err := p.ExtAuthzProvider("otel"); !ok || !errors.Is(err, ErrNotExtAuthz) {
		t.Errorf("otel: %v %v, want ErrNotExtAuthz", ok, err)
	}
	if _, ok, _ := p.ExtAuthzProvider("nope"); ok {
		t.Error("nope found")
	}
	if p, ignored, err := (Flags{}).Load(); p != nil || ignored != nil || err != nil {
		t.Errorf("no --mesh-config: %v %v %v", p, ignored, err)
	}
}

// Bad MeshConfigs are refused with errors naming the field.
func TestBadMeshConfigIsRefusedNamingTheField(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"unknown field", "extensionProviders: [{name: a, envoyExtAuthzHttp: {service: s, port: 80, nope: 1}}]", "extensionProviders[0].envoyExtAuthzHttp.nope"},
		{"no name", "extensionProviders: [{envoyExtAuthzHttp: {service: s, port: 80}}]", "extensionProviders[0].name: required"},
		{"twice", "extensionProviders: [{name: a, envoyExtAuthzHttp: {service: s, port: 80}}, {name: a, envoyExtAuthzGrpc: {service: s, port: 90}}]", `extensionProviders[1].name: provider "a" is defined twice`},
		{"no service", "extensionProviders: [{name: a, envoyExtAuthzGrpc: {port: 90}}]", "extensionProviders[0].envoyExtAuthzGrpc.service: required"},
		{"no port", "extensionProviders: [{name: a, envoyExtAuthzHttp: {service: s}}]", "extensionProviders[0].envoyExtAuthzHttp.port: port 0 is out of range"},
		{"bad status", "extensionProviders: [{name: a, envoyExtAuthzHttp: {service: s, port: 80, statusOnError: '999'}}]", `extensionProviders[0].envoyExtAuthzHttp.statusOnError: "999" is not an HTTP status`},
		{"bad path prefix", "extensionProviders: [{name: a, envoyExtAuthzHttp: {service: s, port: 80, pathPrefix: check}}]", `pathPrefix: "check" must be a path starting with /`},
		{"zero timeout", "extensionProviders: [{name: a, envoyExtAuthzGrpc: {service: s, port: 80, timeout: 0s}}]", "envoyExtAuthzGrpc.timeout: must be positive"},
		{"no type", "extensionProviders: [{name: a}]", "extensionProviders[0]: names no provider type"},
		{"not YAML", "extensionProviders: [", "not YAML"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Parse([]byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
	if p, _, err := Parse([]byte("")); err != nil || len(p) != 0 {
		t.Errorf("empty file: %v %v", p, err)
	}
}

// The file is operator input, but parsing it must never panic.
func FuzzParse(f *testing.F) {
	f.Add([]byte("extensionProviders: [{name: a, envoyExtAuthzHttp: {service: s, port: 80, timeout: 1s}}]"))
	f.Add([]byte("accessLogFile: x\ndefaultConfig: {proxyMetadata: {A: b}}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, _, err := Parse(data)
		if err == nil {
			for name := range p {
				_, _, _ = p.ExtAuthzProvider(name)
			}
		}
	})
}

// CUSTOM policies whose provider meshlens cannot use are analysis
// findings naming why, when the validator knows the mesh config's
// providers; a usable one is not.
func TestCustomPolicyWithAnUnusableProviderIsReported(t *testing.T) {
	p, _, err := Flags{Path: filepath.Join("..", "..", "examples", "meshconfig", "extension-providers.yaml")}.Load()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		providers Providers
		name      string
		want      string
	}{
		{p, "ext-authz-http", ""},
		{p, "ext-authz-grpc", ""},
		{p, "nope", `extension provider "nope" is not in --mesh-config's extensionProviders`},
		{p, "otel", `extension provider "otel": not an envoyExtAuthzHttp or envoyExtAuthzGrpc provider`},
		{nil, "ext-authz-http", "meshlens has no mesh config (--mesh-config)"},
	} {
		kinds, err := config.NewKinds(config.IstioKinds(config.IstioOptions{ExtAuthzProvider: tc.providers.CheckExtAuthz})...)
		if err != nil {
			t.Fatal(err)
		}
		store, err := config.Open(t.TempDir(), kinds, slog.New(slog.DiscardHandler), nil)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := kinds.Parse([]byte("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: ext, namespace: default}\nspec:\n  action: CUSTOM\n  provider: {name: " + tc.name + "}\n  rules: [{to: [{operation: {paths: [/admin]}}]}]\n"))
		if err != nil {
			t.Fatal(err)
		}
		_, warnings, err := store.Apply(context.Background(), objs)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, w := range warnings {
			got = append(got, w.Code+" "+w.Field+" "+w.Message)
		}
		switch {
		case tc.want == "" && len(got) != 0:
			t.Errorf("%s: unexpected findings %v", tc.name, got)
		case tc.want != "" && (len(got) != 1 || !strings.Contains(got[0], "IST0101 provider.name") || !strings.Contains(got[0], tc.want) || !strings.Contains(got[0], "fails closed")):
			t.Errorf("%s: findings %v, want one naming %q", tc.name, got, tc.want)
		}
	}
}
