package kube

import (
	"context"
	"fmt"
	"net"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/meshlens/meshlens/alerting"
	"github.com/meshlens/meshlens/auth"
	"github.com/meshlens/meshlens/controlplane/config"
	"github.com/meshlens/meshlens/controlplane/credentials"
	"github.com/meshlens/meshlens/controlplane/registry"
	"github.com/meshlens/meshlens/controlplane/xds"
	"github.com/meshlens/meshlens/graph"
	"github.com/meshlens/meshlens/internal/kubetest"
	"github.com/meshlens/meshlens/internal/meshtest"
	"github.com/meshlens/meshlens/mesh"
	"github.com/meshlens/meshlens/rollout"
)

// controlPlane is meshlens' control plane on a test cluster: the registry and
// the custom-resource config source feeding a config store and an xDS server.
// With rollouts it is `meshlens serve --kubeconfig` minus telemetry ingest: the
// live graph, the rollout engine with the Kubernetes traffic providers,
// alerting, the status writer and the HTTP API of rollouts and alerts.
type controlPlane struct {
	store    *config.Store
	registry *Registry
	source   *ConfigSource
	xdsAddr  string

	live   *graph.Live
	engine *rollout.Engine
	reg    *prometheus.Registry // the rollout engine's metrics
	api    string               // base URL of the HTTP API
	stop   func()
}

type cpOptions struct {
	// rollouts runs the rollout engine, alerting, the status writer and
	// the HTTP API.
	rollouts bool
	// dataDir is meshlens' data dir (config, rollout state); default a new
	// one. The same dir is a restart.
	dataDir string
	// provider is meshlens serve --traffic-provider.
	provider string
	// writer is the identity the traffic providers write with; default
	// the cluster's admin.
	writer *rest.Config
}

// operatorToken is the HTTP API's operator token in these tests.
const operatorToken = "kube-test-operator"

func startControlPlane(t *testing.T, c *kubetest.Cluster, opts cpOptions) *controlPlane {
	t.Helper()
	logger := meshtest.Logger(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wait []chan struct{}
	run := func(f func(context.Context) error) {
		done := make(chan struct{})
		wait = append(wait, done)
		go func() { defer close(done); _ = f(ctx) }()
	}
	if opts.dataDir == "" {
		opts.dataDir = t.TempDir() // before cp.stop's cleanup, so removed after it
	}
	var cleanups []func()
	var once sync.Once
	cp := &controlPlane{}
	cp.stop = func() {
		once.Do(func() {
			cancel()
			for _, d := range wait {
				<-d
			}
			for _, f := range cleanups {
				f()
			}
		})
	}
	t.Cleanup(cp.stop)
	health, err := NewHealth(c.Client, logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := NewRegistry(c.Client, health, RegistryOptions{Debounce: 10 * time.Millisecond}, logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Gateway servers' credentialName from the cluster's Secrets, over SDS,
	// and analysis of them.
	creds, err := NewCredentials(c.Client, health, logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	kinds, err := config.NewKinds(append(config.IstioKinds(config.IstioOptions{KnownHost: func(h string) bool { return reg.Snapshot().Has(h) },
		GatewayCredential: func(r config.GatewayCredentialRef) (string, string, bool) {
			return creds.GatewayCredential(reg.Snapshot(), r)
		}}),
		rollout.KindSpec(""), alerting.KindSpec())...)
	if err != nil {
		t.Fatal(err)
	}
	store, err := config.Open(opts.dataDir, kinds, logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	ic, err := istioclient.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	src, err := NewConfigSource(c.Client, ic, c.Dynamic, store, health, logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := xds.NewServer(ctx, logger, nil, xds.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	creds.Subscribe(func(sn *credentials.Snapshot) {
		_ = srv.UpdateCredentials(sn)
		src.Resync()
	})
	cleanups = append(cleanups, store.Subscribe(func(sn *config.Snapshot) { _ = srv.Update(sn) }),
		reg.Subscribe(func(sn *registry.Snapshot) { _ = srv.UpdateServices(sn) }))
	lis := meshtest.Listen(t)
	run(func(ctx context.Context) error { return srv.ServeListener(ctx, lis) })
	run(health.Run)
	run(reg.Run)
	run(src.Run)
	run(creds.Run)
	*cp = controlPlane{store: store, registry: reg, source: src, xdsAddr: lis.Addr().String(), stop: cp.stop}
	if opts.rollouts {
		cp.startRollouts(t, c, opts, store, run, &cleanups)
	}
	select {
	case <-src.Ready():
	case <-time.After(60 * time.Second):
		t.Fatal("config source did not sync")
	}
	return cp
}

func (cp *controlPlane) startRollouts(t *testing.T, c *kubetest.Cluster, opts cpOptions, store *config.Store, run func(func(context.Context) error), cleanups *[]func()) {
	t.Helper()
	logger := meshtest.Logger(t)
	var err error
	cp.live, err = graph.New(graph.Config{Tiers: []graph.Tier{{Width: time.Second, Buckets: 120}, {Width: 10 * time.Second, Buckets: 60}},
		PublishInterval: 50 * time.Millisecond}, logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	wc := c.Config
	if opts.writer != nil {
		wc = opts.writer
	}
	client, err := kubernetes.NewForConfig(wc)
	if err != nil {
		t.Fatal(err)
	}
	ic, err := istioclient.NewForConfig(wc)
	if err != nil {
		t.Fatal(err)
	}
	gc, err := gatewayclient.NewForConfig(wc)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(wc)
	if err != nil {
		t.Fatal(err)
	}
	traffic := NewTraffic(client, ic, gc, dyn, "", logger)
	cp.reg = prometheus.NewRegistry()
	cp.engine, err = rollout.New(store, cp.live, rollout.Options{DataDir: opts.dataDir, Tick: 20 * time.Millisecond,
		TrafficProvider: opts.provider, Traffic: traffic.Providers()}, logger, cp.reg)
	if err != nil {
		t.Fatal(err)
	}
	alerts, err := alerting.New(store, cp.live, cp.engine, alerting.Options{Interval: 100 * time.Millisecond}, logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	sw := NewStatusWriter(c.Dynamic, store, cp.engine.List, alerts.Firing, logger)
	sw.interval = 100 * time.Millisecond
	az := auth.New([]auth.Token{{Value: operatorToken, Role: auth.Operator}})
	e := echo.New()
	api := e.Group("/api/v1", az.Viewer(false))
	cp.engine.RegisterRoutes(api, az.Operator())
	alerts.RegisterRoutes(api, az.Operator())
	hs := httptest.NewServer(e)
	cp.api = hs.URL + "/api/v1"
	*cleanups = append(*cleanups, hs.Close)
	run(cp.engine.Run)
	run(alerts.Run)
	run(sw.Run)
}

func (cp *controlPlane) client(t *testing.T, ns, target string) testgrpc.TestServiceClient {
	t.Helper()
	bs, err := xds.GRPCBootstrap{ServerAddr: cp.xdsAddr, NodeID: "client-" + target, Metadata: map[string]string{xds.MetaNamespace: ns}}.JSON()
	if err != nil {
		t.Fatal(err)
	}
	return meshtest.XDSClient(t, bs, target, nil)
}

// podBackend serves a test backend inside the pod network on ip:port.
func podBackend(t *testing.T, pn *kubetest.PodNetwork, ip string, port int, name, version string, opts ...grpc.ServerOption) *meshtest.Backend {
	t.Helper()
	lis, err := pn.Listen(ip, port)
	if err != nil {
		t.Fatal(err)
	}
	b := meshtest.NewBackend(name, version, lis.Addr().(*net.TCPAddr).Port)
	s := grpc.NewServer(opts...)
	b.Register(s)
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return b
}

// share calls target n times and returns the share of answers per backend.
func share(t *testing.T, c testgrpc.TestServiceClient, n int) map[string]int {
	t.Helper()
	out := map[string]int{}
	for i := 0; i < n; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{})
		cancel()
		if err != nil {
			out["error"]++
			continue
		}
		out[resp.GetHostname()]++
	}
	return out
}

// reviews is the service the rollout tests move: the Service "reviews"
// (gRPC, 9080) and one Pod of v1 and of v2 in the pod network, whose
// backends answer with their version as the hostname. Every call a backend
// serves is recorded in the live graph of the current control plane, as
// the collector would record its server span.
type reviews struct {
	ns     string
	svc    *corev1.Service
	v1, v2 *meshtest.Backend
	pods   map[string]*corev1.Pod
	live   atomic.Pointer[graph.Live]
}

func newReviews(t *testing.T, c *kubetest.Cluster, pn *kubetest.PodNetwork, ns string) *reviews {
	t.Helper()
	ctx := context.Background()
	r := &reviews{ns: ns, pods: map[string]*corev1.Pod{}}
	var err error
	r.svc, err = c.Client.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "reviews", Namespace: ns, Labels: map[string]string{"app": "reviews"}},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "reviews"}, Ports: []corev1.ServicePort{
			{Name: "grpc", Port: 9080, TargetPort: intstr.FromInt32(9080)}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var eps []kubetest.Endpoint
	for _, v := range []string{"v1", "v2"} {
		ip := pn.NewIP(t)
		b := podBackend(t, pn, ip, 9080, v, v, grpc.UnaryInterceptor(r.record(v)))
		if v == "v1" {
			r.v1 = b
		} else {
			r.v2 = b
		}
		p, err := kubetest.RunPod(ctx, c.Client, ns, "reviews-"+v, "", ip, map[string]string{"app": "reviews", "version": v}, true)
		if err != nil {
			t.Fatal(err)
		}
		r.pods[v] = p
		eps = append(eps, kubetest.Endpoint{Pod: p, Ready: true})
	}
	if err := kubetest.WriteSlice(ctx, c.Client, r.svc, nil, eps); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *reviews) record(version string) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := h(ctx, req)
		if live := r.live.Load(); live != nil {
			_ = live.ConsumeRecords(ctx, []mesh.Record{{
				Time:        start,
				Source:      mesh.Peer{Namespace: r.ns, Service: "client", Workload: "client", Version: "v1"},
				Destination: mesh.Peer{Namespace: r.ns, Service: "reviews", Workload: "reviews-" + version, Version: version},
				Protocol:    "grpc", Method: info.FullMethod, Code: 200, GRPCStatus: int16(status.Convert(err).Code()),
				Duration: time.Since(start), Origin: mesh.OriginSpanPair,
			}})
		}
		return resp, err
	}
}

func (r *reviews) host() string   { return "reviews." + r.ns + ".svc.cluster.local" }
func (r *reviews) target() string { return r.host() + ":9080" }

// load calls reviews through meshlens' xDS continuously and records what
// every call saw.
func (r *reviews) load(t *testing.T, cp *controlPlane) *meshtest.Load {
	t.Helper()
	r.live.Store(cp.live)
	c := cp.client(t, r.ns, r.target())
	return meshtest.StartLoad(t, 4, 5*time.Millisecond, func(ctx context.Context) (string, error) {
		resp, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.WaitForReady(true))
		return resp.GetHostname(), err
	})
}

// waitRollout waits until the engine's rollout satisfies ok; it fails
// with the rollout's history otherwise.
func waitRollout(t *testing.T, cp *controlPlane, ns, name string, d time.Duration, what string, ok func(rollout.Status) error) rollout.Status {
	t.Helper()
	var st rollout.Status
	meshtest.Eventually(t, d, what, func() error {
		var found bool
		if st, found = cp.engine.Get(ns, name); !found {
			return fmt.Errorf("rollout %s/%s not known", ns, name)
		}
		if err := ok(st); err != nil {
			return fmt.Errorf("%w (state %s step %d weights %+v, message %q, conditions %+v)", err, st.State, st.Step, st.Weights, st.Message, st.Conditions)
		}
		return nil
	})
	return st
}

// breakCandidate makes reviews v2 fail every call and waits until
// onStable says the routing object in the API server is back on stable
// (what names it). How long the rollback took from the first failed call
// the callers of l saw is logged: the < 10 s target is held by
// rollout.BenchmarkRollbackWithServeDefaults, not here, where a loaded
// machine (a real API server, the engine, the load) makes it a measure of
// the machine; a rollback that does not come fails the wait.
func (r *reviews) breakCandidate(t *testing.T, l *meshtest.Load, what string, onStable func() error) {
	t.Helper()
	r.v2.FailCode.Store(int32(codes.Unavailable))
	broke := time.Now()
	var stableAt time.Time
	meshtest.Eventually(t, time.Minute, "the "+what+" in the API server is back on stable", func() error {
		if err := onStable(); err != nil {
			return err
		}
		stableAt = time.Now()
		return nil
	})
	firstBad, ok := l.FirstAfter(broke, "error")
	if !ok {
		t.Fatal("callers never saw an error from the failing candidate")
	}
	if stableAt.Before(firstBad) {
		t.Errorf("the %s was back on stable (%v) before the first bad response (%v): not a rollback of the failing candidate", what, stableAt.Format("15:04:05.000"), firstBad.Format("15:04:05.000"))
	}
	t.Logf("first bad response to the %s on stable in the API server: %v (target < 10s, see BenchmarkRollbackWithServeDefaults)", what, stableAt.Sub(firstBad).Round(time.Millisecond))
}

// waitSucceeded waits for the rollout to succeed, failing at once if it
// ends any other way, and returns the candidate weights it pushed, in
// order ("[25 50 100]").
func waitSucceeded(t *testing.T, cp *controlPlane, ns, name string, d time.Duration) (rollout.Status, string) {
	t.Helper()
	st := waitRollout(t, cp, ns, name, d, "succeeded", func(st rollout.Status) error {
		if st.State.Terminal() && st.State != rollout.Succeeded {
			return fmt.Errorf("ended %s", st.State)
		}
		return inState(rollout.Succeeded)(st)
	})
	var pushed []int32
	for _, h := range st.History {
		if h.Type == "push" && h.Error == "" {
			pushed = append(pushed, h.Weights.Candidate)
		}
	}
	if n := len(pushed); n > 1 && pushed[n-1] == pushed[n-2] {
		pushed = pushed[:n-1] // a retried push of the last step
	}
	return st, fmt.Sprint(pushed)
}

// inState is a waitRollout check for a state.
func inState(want rollout.State) func(rollout.Status) error {
	return func(st rollout.Status) error {
		if st.State != want {
			return fmt.Errorf("state %s, want %s", st.State, want)
		}
		return nil
	}
}

// metricValue reads one sample of a metric (the one whose labels include
// labels) from reg; -1 when there is none.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for k, v := range labels {
				found := false
				for _, lp := range m.GetLabel() {
					found = found || (lp.GetName() == k && lp.GetValue() == v)
				}
				if !found {
					continue metrics
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return -1
}

// forgetRollouts deletes the namespace's Rollouts when the test ends (after
// the control planes started later than this call have stopped): control
// planes of later tests read the whole shared cluster and would take them on.
func forgetRollouts(t *testing.T, c *kubetest.Cluster, ns string) {
	t.Helper()
	t.Cleanup(func() {
		_ = c.Dynamic.Resource(rolloutGVR).Namespace(ns).DeleteCollection(context.Background(), metav1.DeleteOptions{}, metav1.ListOptions{})
	})
}
