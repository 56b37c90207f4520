package rollout

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"google.golang.org/grpc"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"

	"github.com/meshlens/meshlens/auth"
	"github.com/meshlens/meshlens/internal/meshtest"
)

const opToken = "operator-token-0123456789"

// serveAPI serves the engine's routes over real HTTP with operator auth.
func (r *rig) serveAPI() string {
	az := auth.New([]auth.Token{{Value: opToken, Role: auth.Operator}})
	e := echo.New()
	r.engine.RegisterRoutes(e.Group("/api/v1", az.Viewer(false)), az.Operator())
	srv := httptest.NewServer(e)
	r.t.Cleanup(srv.Close)
	return srv.URL + "/api/v1"
}

// only checks that n calls (with metadata md) all reach version want.
func only(t *testing.T, c testgrpc.TestServiceClient, want string, md ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if len(md) > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, md...)
	}
	got := map[string]int{}
	for range 20 {
		resp, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.WaitForReady(true))
		if err != nil {
			got["error"]++
			continue
		}
		got[resp.GetHostname()]++
	}
	if got[want] != 20 {
		return fmt.Errorf("want all 20 calls on %s, got %v", want, got)
	}
	return nil
}

func TestBlueGreenPreviewThenPromoteThenSwitchBackOverAPI(t *testing.T) {
	r := newRig(t)
	r.startEngine()
	api := r.serveAPI()
	c := r.client()
	code, body := meshtest.HTTP(t, http.MethodPost, api+"/rollouts", opToken, `apiVersion: meshlens.io/v1alpha1
kind: Rollout
metadata: {name: echo, namespace: default}
spec:
  service: echo
  stable: stable
  candidate: canary
  strategy: {blueGreen: {preview: [{header: x-preview, exact: "1"}]}}
`)
	if code != 200 {
		t.Fatalf("POST /rollouts: %d %s", code, body)
	}
	r.waitState("echo", Progressing, 5*time.Second)
	meshtest.Eventually(t, 10*time.Second, "preview header reaches the candidate", func() error { return only(t, c, "v2", "x-preview", "1") })
	meshtest.Eventually(t, 10*time.Second, "plain traffic stays on stable", func() error { return only(t, c, "v1") })

	if code, body := meshtest.HTTP(t, http.MethodPost, api+"/rollouts/default/echo/promote", "", ""); code != http.StatusUnauthorized {
		t.Fatalf("promote without a token: %d %s", code, body)
	}
	if code, body := meshtest.HTTP(t, http.MethodPost, api+"/rollouts/default/echo/promote", opToken, ""); code != 200 {
		t.Fatalf("promote: %d %s", code, body)
	}
	r.waitState("echo", Succeeded, 5*time.Second)
	meshtest.Eventually(t, 10*time.Second, "all traffic switched to the candidate", func() error { return only(t, c, "v2") })

	before := r.store.Snapshot().Version
	if code, body := meshtest.HTTP(t, http.MethodPost, api+"/rollouts/default/echo/abort", opToken, ""); code != 200 {
		t.Fatalf("abort (switch back): %d %s", code, body)
	}
	r.waitState("echo", RolledBack, 5*time.Second)
	if got := r.store.Snapshot().Version - before; got != 1 {
		t.Errorf("switch-back took %d config versions, want one push", got)
	}
	meshtest.Eventually(t, 10*time.Second, "all traffic back on stable", func() error { return only(t, c, "v1") })

	code, body = meshtest.HTTP(t, http.MethodGet, api+"/rollouts/default/echo", "", "")
	var st Status
	if code != 200 || json.Unmarshal([]byte(body), &st) != nil || st.State != RolledBack || len(st.History) == 0 {
		t.Fatalf("GET rollout: %d %s", code, body)
	}
	for _, tc := range []struct {
		path string
		want int
	}{
		{"/rollouts/default/echo/resume", http.StatusConflict},
		{"/rollouts/default/ghost/abort", http.StatusNotFound},
		{"/rollouts/default/echo/explode", http.StatusNotFound},
	} {
		if code, body := meshtest.HTTP(t, http.MethodPost, api+tc.path, opToken, ""); code != tc.want || !json.Valid([]byte(body)) {
			t.Errorf("POST %s: %d %s, want %d", tc.path, code, body, tc.want)
		}
	}
}

func TestABCookieGoesToCandidateThenPromotes(t *testing.T) {
	r := newRig(t)
	r.startEngine()
	c := r.client()
	r.apply(`apiVersion: meshlens.io/v1alpha1
kind: Rollout
metadata: {name: echo, namespace: default}
spec:
  service: echo
  stable: stable
  candidate: canary
  strategy: {ab: {match: [{cookie: user, exact: beta}], requests: 60}}
  analysis: {interval: 200ms, window: 3s, minSamples: 20}
`)
	r.waitState("echo", Progressing, 5*time.Second)
	meshtest.Eventually(t, 10*time.Second, "beta cookie reaches the candidate", func() error { return only(t, c, "v2", "cookie", "theme=dark; user=beta") })
	if err := only(t, c, "v1", "cookie", "user=betamax"); err != nil {
		t.Fatalf("another cookie value: %v", err)
	}
	r.startLoad(c, 1, 0) // plain traffic alongside, all on stable
	ctx := metadata.AppendToOutgoingContext(context.Background(), "cookie", "user=beta")
	go func() {
		for r.status("echo").State == Progressing {
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			_, _ = c.UnaryCall(cctx, &testgrpc.SimpleRequest{})
			cancel()
		}
	}()
	st := r.waitState("echo", Succeeded, 30*time.Second)
	explained := false
	for _, h := range st.History {
		explained = explained || (h.Event == EvComplete && strings.Contains(h.Message, "A/B test passed"))
	}
	if !explained {
		t.Errorf("completion not explained:\n%s", historyText(st))
	}
	meshtest.Eventually(t, 10*time.Second, "everyone on the candidate", func() error { return only(t, c, "v2") })
}

func TestRolloutAPIRefusesInvalidRolloutsAndWarnsOnReferences(t *testing.T) {
	r := newRig(t)
	r.startEngine()
	api := r.serveAPI()
	head := "apiVersion: meshlens.io/v1alpha1\nkind: Rollout\nmetadata: {name: echo, namespace: default}\nspec: "
	for _, tc := range []struct {
		name, body, token string
		code              int
		want              string
	}{
		{"no token", head + "{}", "", http.StatusUnauthorized, "operator token"},
		{"steps must increase to 100", head + `{service: echo, stable: stable, candidate: canary, strategy: {canary: {steps: [50, 20]}}}`, opToken, 400, "strategy.canary.steps[1]"},
		// A reference, not a refusal, as in Istio: the DestinationRule may come later.
		{"unknown subset is accepted with a warning", head + `{service: echo, stable: stable, candidate: v9, strategy: {canary: {steps: [100]}}}`, opToken, 200, `"code":"IST0101","object":"Rollout/default/echo","field":"candidate"`},
		{"two strategies", head + `{service: echo, stable: stable, candidate: canary, strategy: {canary: {steps: [100]}, ab: {match: [{header: a, exact: b}], requests: 5}}}`, opToken, 400, "exactly one of canary"},
		{"cookie match needs a value", head + `{service: echo, stable: stable, candidate: canary, strategy: {blueGreen: {preview: [{cookie: user}]}}}`, opToken, 400, "strategy.blueGreen.preview[0]"},
		{"unknown field", head + `{service: echo, stable: stable, candidate: canary, strategy: {canary: {steps: [100], stepz: 1}}}`, opToken, 400, "stepz"},
		{"unknown traffic provider", head + `{trafficProvider: linkerd, service: echo, stable: stable, candidate: canary, strategy: {canary: {steps: [100]}}}`, opToken, 400, `unknown traffic provider \"linkerd\"`},
		{"gatewayAPI needs its route and Services", head + `{trafficProvider: gatewayAPI, service: echo, stable: stable, candidate: canary, strategy: {canary: {steps: [100]}}}`, opToken, 400, `"field":"httpRoute"`},
		{"gatewayAPI Services differ", head + `{trafficProvider: gatewayAPI, httpRoute: r, stableService: a, candidateService: a, service: echo, stable: stable, candidate: canary, strategy: {canary: {steps: [100]}}}`, opToken, 400, `"field":"candidateService"`},
		{"httpRoute is for gatewayAPI", head + `{trafficProvider: istio, httpRoute: r, service: echo, stable: stable, candidate: canary, strategy: {canary: {steps: [100]}}}`, opToken, 400, "only used with trafficProvider gatewayAPI"},
		{"other kinds go to /config", "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: x}\nspec: {hosts: [echo]}", opToken, 400, "POST /api/v1/config"},
		{"valid", head + `{service: echo, stable: stable, candidate: canary, strategy: {canary: {steps: [10, 100], minDuration: 1h}}}`, opToken, 200, `"applied"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := meshtest.HTTP(t, http.MethodPost, api+"/rollouts", tc.token, tc.body)
			if code != tc.code || !strings.Contains(body, tc.want) {
				t.Fatalf("got %d %s, want %d containing %q", code, body, tc.code, tc.want)
			}
		})
	}
	code, body := meshtest.HTTP(t, http.MethodGet, api+"/rollouts", "", "")
	var list ListResponse
	if code != 200 || json.Unmarshal([]byte(body), &list) != nil || len(list.Items) != 1 || list.Items[0].History != nil {
		t.Fatalf("GET /rollouts: %d %s", code, body)
	}
}
