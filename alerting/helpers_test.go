package alerting

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/meshlens/meshlens/auth"
	"github.com/meshlens/meshlens/controlplane/config"
	"github.com/meshlens/meshlens/graph"
	"github.com/meshlens/meshlens/internal/meshtest"
	"github.com/meshlens/meshlens/mesh"
	"github.com/meshlens/meshlens/rollout"
)

const (
	operatorToken = "operator-token-0123456789"
	viewerToken   = "viewer-token-0123456789ab"
)

// env is meshlens' alerting side for real: a config store with the Istio,
// Rollout and AlertRule kinds, the live graph, the rollout engine and
// alerting, served over real HTTP with bearer-token auth.
type env struct {
	t      testing.TB
	kinds  *config.Kinds
	store  *config.Store
	live   *graph.Live
	engine *rollout.Engine
	al     *Alerting
	srv    *httptest.Server
	dir    string // data dir of the store and the engine
}

func newEnv(t testing.TB, opts Options) *env {
	t.Helper()
	logger := meshtest.Logger(t)
	e := &env{t: t}
	var err error
	e.kinds, err = config.NewKinds(append(config.IstioKinds(config.IstioOptions{}), rollout.KindSpec(""), KindSpec())...)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	e.dir = dir
	if e.store, err = config.Open(dir, e.kinds, logger, nil); err != nil {
		t.Fatal(err)
	}
	if e.live, err = graph.New(graph.Config{Tiers: []graph.Tier{{Width: time.Second, Buckets: 120}}, PublishInterval: 50 * time.Millisecond}, logger, nil); err != nil {
		t.Fatal(err)
	}
	if e.engine, err = rollout.New(e.store, e.live, rollout.Options{DataDir: dir, Tick: 20 * time.Millisecond}, logger, nil); err != nil {
		t.Fatal(err)
	}
	if opts.Interval == 0 {
		opts.Interval = 100 * time.Millisecond
	}
	if opts.Notifier.Backoff == 0 {
		opts.Notifier.Backoff = 20 * time.Millisecond
	}
	if e.al, err = New(e.store, e.live, e.engine, opts, logger, nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { _ = e.engine.Run(ctx); done <- struct{}{} }()
	go func() { _ = e.al.Run(ctx); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); <-done; <-done })

	az := auth.New([]auth.Token{{Value: operatorToken, Role: auth.Operator}, {Value: viewerToken, Role: auth.Viewer}})
	ec := echo.New()
	api := ec.Group("/api/v1", az.Viewer(false))
	e.al.RegisterRoutes(api, az.Operator())
	e.engine.RegisterRoutes(api, az.Operator())
	e.srv = httptest.NewServer(ec)
	t.Cleanup(e.srv.Close)

	e.apply(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo.default.svc.cluster.local]
  ports: [{number: 9000, name: grpc, protocol: GRPC}]
  workloadSelector: {labels: {app: echo}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo, namespace: default}
spec:
  host: echo
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
`)
	return e
}

func (e *env) apply(yaml string) {
	e.t.Helper()
	objs, err := e.kinds.Parse([]byte(yaml))
	if err != nil {
		e.t.Fatal(err)
	}
	if _, _, err := e.store.Apply(context.Background(), objs); err != nil {
		e.t.Fatal(err)
	}
}

// startRollout applies a canary rollout of echo v2 that never promotes on
// its own, and waits until it progresses.
func (e *env) startRollout(name string) {
	e.t.Helper()
	e.apply(fmt.Sprintf(`apiVersion: meshlens.io/v1alpha1
kind: Rollout
metadata: {name: %s, namespace: default}
spec:
  service: echo
  stable: v1
  candidate: v2
  strategy: {canary: {steps: [10, 100], minDuration: 1h}}
`, name))
	e.waitRollout(name, rollout.Progressing, 5*time.Second)
}

func (e *env) waitRollout(name string, want rollout.State, d time.Duration) rollout.Status {
	e.t.Helper()
	deadline := time.Now().Add(d)
	for {
		st, _ := e.engine.Get("default", name)
		if st.State == want {
			return st
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("rollout %s is %q after %v, want %q", name, st.State, d, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// keepTraffic records traffic(version, n, errs, lat) every 50 ms until
// stop is called or the test ends: a version that keeps serving (or
// failing) while a rule watches it.
func (e *env) keepTraffic(t *testing.T, version string, n, errs int, lat time.Duration) (stop func()) {
	done := make(chan struct{})
	var once sync.Once
	stop = func() { once.Do(func() { close(done) }) }
	t.Cleanup(stop)
	go func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(50 * time.Millisecond):
				e.traffic(version, n, errs, lat)
			}
		}
	}()
	return stop
}

// traffic records n requests to echo's version, errs of them failing,
// each lasting lat.
func (e *env) traffic(version string, n, errs int, lat time.Duration) {
	recs := make([]mesh.Record, n)
	now := time.Now()
	for i := range recs {
		st := int16(0)
		if i < errs {
			st = 14
		}
		recs[i] = mesh.Record{Time: now, Source: mesh.Peer{Namespace: "default", Service: "client"},
			Destination: mesh.Peer{Namespace: "default", Service: "echo", Version: version},
			Protocol:    "grpc", Code: 200, GRPCStatus: st, Duration: lat, Origin: mesh.OriginSpanPair}
	}
	_ = e.live.ConsumeRecords(context.Background(), recs)
}

func containsField(err error, field string) bool {
	var fe config.FieldErrors
	if !errors.As(err, &fe) {
		return false
	}
	for _, e := range fe {
		if e.Field == field {
			return true
		}
	}
	return false
}
