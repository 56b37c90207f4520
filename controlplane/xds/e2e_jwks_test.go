package xds

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshlens/meshlens/controlplane/jwks"
	"github.com/meshlens/meshlens/internal/meshtest"
)

// meshlens fetches a RequestAuthentication issuer's keys (OpenID discovery:
// the rule names no jwksUri) and an Envoy sidecar gets them inline in its
// inbound jwt_authn filter over ADS; while the issuer cannot serve them the
// sidecar gets a key set nobody has the private key of (every token
// refused), and the real keys once the issuer is back.
func TestFetchedJWKSReachEnvoyInlineAndFailClosedMeanwhile(t *testing.T) {
	const keys = `{"keys":[{"kty":"EC","crv":"P-256","kid":"a1","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}`
	var up atomic.Bool
	mux := http.NewServeMux()
	var issuer string
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, `{"issuer":%q,"jwks_uri":%q}`, issuer, issuer+"/keys")
	})
	mux.HandleFunc("/keys", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, keys) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	issuer = srv.URL

	m := newTestMesh(t)
	res, err := jwks.New(jwks.Config{RetryAfterFailure: 100 * time.Millisecond, Logger: meshtest.Logger(t),
		OnChange: func(k *jwks.Keys) {
			if err := m.srv.UpdateJWKS(k); err != nil {
				t.Errorf("UpdateJWKS: %v", err)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	meshtest.Background(t, res.Run)

	cfg := serviceYAML(echoHost, meshtest.NewBackend("v1", "v1", 7001)) + fmt.Sprintf(`---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: echo, namespace: default}
spec:
  selector: {matchLabels: {app: echo}}
  jwtRules: [{issuer: %q}]
`, issuer)
	m.apply(cfg)
	res.Update(parseSnapshot(t, m.version, cfg))

	cc, err := grpc.NewClient(m.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	md, err := structpb.NewStruct(map[string]any{MetaNamespace: "default", MetaInstanceIPs: "127.0.0.1", MetaLabels: map[string]any{"app": "echo", "version": "v1"}})
	if err != nil {
		t.Fatal(err)
	}
	actx, acancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer acancel()
	a, err := newADSClientAs(actx, cc, &corev3.Node{Id: "sidecar~127.0.0.1~echo-v1.default~default.svc.cluster.local", UserAgentName: "envoy", Metadata: md},
		map[string][]string{resource.ListenerType: nil})
	if err != nil {
		t.Fatal(err)
	}
	go a.run()

	inboundKeys := func() (string, error) {
		a.mu.Lock()
		defer a.mu.Unlock()
		for _, r := range a.last[resource.ListenerType].GetResources() {
			l := &listenerv3.Listener{}
			if err := r.UnmarshalTo(l); err != nil {
				return "", err
			}
			if l.Name != "virtualInbound" {
				continue
			}
			for _, fc := range l.FilterChains {
				for _, f := range fc.Filters {
					m := &hcm.HttpConnectionManager{}
					if f.GetTypedConfig().UnmarshalTo(m) != nil {
						continue
					}
					for _, hf := range m.HttpFilters {
						if hf.Name != jwtAuthnFilter {
							continue
						}
						cfg := &jwtv3.JwtAuthentication{}
						if err := hf.GetTypedConfig().UnmarshalTo(cfg); err != nil {
							return "", err
						}
						for _, p := range cfg.Providers {
							if p.Issuer == issuer {
								return p.GetLocalJwks().GetInlineString(), nil
							}
						}
					}
				}
			}
		}
		return "", fmt.Errorf("no jwt_authn provider for %s in virtualInbound", issuer)
	}
	meshtest.Eventually(t, 10*time.Second, "while discovery fails, the sidecar gets keys nobody can sign for", func() error {
		got, err := inboundKeys()
		if err != nil {
			return err
		}
		if got != jwks.PublicOnly {
			return fmt.Errorf("inline keys %.60q, want the public-only set", got)
		}
		if f := res.Keys().Failures(); !strings.Contains(f[jwks.Source{Issuer: issuer}], "OpenID discovery") {
			return fmt.Errorf("failures %v, want the discovery failure named", f)
		}
		return nil
	})
	up.Store(true)
	meshtest.Eventually(t, 10*time.Second, "the issuer's keys reach the sidecar once discovery works", func() error {
		got, err := inboundKeys()
		if err != nil {
			return err
		}
		if got != keys {
			return fmt.Errorf("inline keys %.60q, want the issuer's", got)
		}
		return nil
	})
}
