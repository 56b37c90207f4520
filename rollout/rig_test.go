package rollout

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/meshlens/meshlens/controlplane/config"
	"github.com/meshlens/meshlens/controlplane/xds"
	"github.com/meshlens/meshlens/graph"
	"github.com/meshlens/meshlens/internal/meshtest"
	"github.com/meshlens/meshlens/mesh"
)

// rig is the real closed loop on loopback: a config store whose snapshots
// feed meshlens' ADS server, proxyless gRPC clients routed by it, two
// versions of a backend whose every call becomes a mesh.Record in the live
// graph (as the collector would make from their server spans), and the
// rollout engine judging that graph and applying routes to the store.
type rig struct {
	t       testing.TB
	dir     string
	logger  *slog.Logger
	kinds   *config.Kinds
	store   *config.Store
	live    *graph.Live
	xds     *xds.Server
	xdsAddr string
	engine  *Engine
	stopEng func()
	unsub   func()
	v1, v2  *meshtest.Backend
	clients atomic.Int64
	tick    time.Duration      // the engine's
	traffic map[string]Traffic // the engine's providers besides meshlens
	// tel, when set (startCollector), makes calls and backends emit OTel
	// spans through the collector instead of recording to the graph.
	tel atomic.Pointer[telemetry]
}

const (
	ns       = "default"
	svc      = "echo"
	host     = "echo.default.svc.cluster.local"
	target   = host + ":9000"
	testTick = 20 * time.Millisecond
)

func newRig(t testing.TB) *rig {
	t.Helper()
	return newRigWith(t, graph.Config{Tiers: []graph.Tier{{Width: time.Second, Buckets: 120}, {Width: 10 * time.Second, Buckets: 60}},
		PublishInterval: 50 * time.Millisecond}, testTick)
}

// newRigWith is newRig with the live graph's configuration and the
// engine's tick given: the zero values are meshlens serve's defaults.
func newRigWith(t testing.TB, gc graph.Config, tick time.Duration) *rig {
	t.Helper()
	r := &rig{t: t, dir: t.TempDir(), tick: tick}
	r.logger = meshtest.Logger(t)
	var err error
	r.kinds, err = config.NewKinds(append(config.IstioKinds(config.IstioOptions{}), KindSpec(""))...)
	if err != nil {
		t.Fatal(err)
	}
	r.live, err = graph.New(gc, r.logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.xds, err = xds.NewServer(ctx, r.logger, nil, xds.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	lis := meshtest.Listen(t)
	r.xdsAddr = lis.Addr().String()
	done := make(chan struct{})
	go func() { defer close(done); _ = r.xds.ServeListener(ctx, lis) }()
	t.Cleanup(func() { cancel(); <-done })
	r.v1, r.v2 = r.startBackend("v1"), r.startBackend("v2")
	r.openStore()
	t.Cleanup(func() { r.stop() })
	r.apply(fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: echo, namespace: default}
spec:
  hosts: [%[1]s]
  ports: [{number: 9000, name: grpc, protocol: GRPC}]
  workloadSelector: {labels: {app: echo}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: echo-v1, namespace: default}
spec: {address: 127.0.0.1, ports: {grpc: %[2]d}, labels: {app: echo, version: v1}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: echo-v2, namespace: default}
spec: {address: 127.0.0.1, ports: {grpc: %[3]d}, labels: {app: echo, version: v2}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo, namespace: default}
spec:
  host: echo
  subsets:
  - {name: stable, labels: {version: v1}}
  - {name: canary, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo]
  http: [{route: [{destination: {host: echo, subset: stable}}]}]
`, host, r.v1.Port, r.v2.Port))
	return r
}

// openStore opens the config store in the rig's data dir and feeds its
// snapshots to the ADS server, as `meshlens serve` does.
func (r *rig) openStore() {
	var err error
	r.store, err = config.Open(r.dir, r.kinds, r.logger, nil)
	if err != nil {
		r.t.Fatal(err)
	}
	r.unsub = r.store.Subscribe(func(sn *config.Snapshot) {
		if err := r.xds.Update(sn); err != nil {
			r.t.Errorf("xds update: %v", err)
		}
	})
}

// startEngine builds the engine from the data dir and runs it.
func (r *rig) startEngine() {
	r.t.Helper()
	var err error
	r.engine, err = New(r.store, r.live, Options{DataDir: r.dir, Tick: r.tick, Traffic: r.traffic}, r.logger, nil)
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.engine.Run(ctx) }()
	r.stopEng = func() { cancel(); <-done }
}

// stop stops the engine and the store's feed to xDS: meshlens going away
// (the ADS server keeps serving what it had, as clients would keep it).
func (r *rig) stop() {
	if r.stopEng != nil {
		r.stopEng()
		r.stopEng = nil
	}
	if r.unsub != nil {
		r.unsub()
		r.unsub = nil
	}
}

func (r *rig) apply(yaml string) {
	r.t.Helper()
	objs, err := r.kinds.Parse([]byte(yaml))
	if err != nil {
		r.t.Fatal(err)
	}
	if _, _, err := r.store.Apply(context.Background(), objs); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) status(name string) Status {
	st, _ := r.engine.Get(ns, name)
	return st
}

// waitState waits for the rollout to reach state; it fails fast when the
// rollout ends in another terminal state.
func (r *rig) waitState(name string, want State, d time.Duration) Status {
	r.t.Helper()
	deadline := time.Now().Add(d)
	for {
		st := r.status(name)
		if st.State == want {
			return st
		}
		if st.State.Terminal() {
			r.t.Fatalf("rollout ended %s (%s), want %s; history:\n%s", st.State, st.Message, want, historyText(st))
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("rollout is %s at step %d after %v, want %s; last verdict %+v", st.State, st.Step, d, want, st.LastVerdict)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func historyText(st Status) string {
	var b strings.Builder
	for _, h := range st.History {
		switch h.Type {
		case "verdict":
			fmt.Fprintf(&b, "  %s verdict step %d %s %v\n", h.At.Format("15:04:05.000"), h.Step, h.Verdict.Result, h.Verdict.Reasons)
		case "push":
			fmt.Fprintf(&b, "  %s push %+v version %d %s\n", h.At.Format("15:04:05.000"), *h.Weights, h.ConfigVersion, h.Error)
		default:
			fmt.Fprintf(&b, "  %s %s: %s -> %s (%s) %s\n", h.At.Format("15:04:05.000"), h.Event, h.From, h.To, h.Source, h.Message)
		}
	}
	return b.String()
}

// startBackend starts one version of the echo service, answering with its
// version as the hostname. Every call is recorded in the live graph as its
// server span would be.
func (r *rig) startBackend(version string) *meshtest.Backend {
	r.t.Helper()
	b := meshtest.StartBackend(r.t, version, version, grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if tel := r.tel.Load(); tel != nil {
			return tel.serverSpan(ctx, version, info.FullMethod, func(ctx context.Context) (any, error) { return h(ctx, req) })
		}
		start := time.Now()
		resp, err := h(ctx, req)
		st := status.Convert(err)
		_ = r.live.ConsumeRecords(ctx, []mesh.Record{{
			Time:        start,
			Source:      mesh.Peer{Namespace: ns, Service: "client", Workload: "client", Version: "v1"},
			Destination: mesh.Peer{Namespace: ns, Service: svc, Workload: "echo-" + version, Version: version},
			Protocol:    "grpc", Method: info.FullMethod, Code: 200, GRPCStatus: int16(st.Code()),
			Duration: time.Since(start), Origin: mesh.OriginSpanPair,
		}})
		return resp, err
	}))
	return b
}

// client dials the echo service through meshlens' xDS as its own node.
func (r *rig) client() testgrpc.TestServiceClient {
	r.t.Helper()
	bs, err := xds.GRPCBootstrap{ServerAddr: r.xdsAddr, NodeID: fmt.Sprintf("client-%d", r.clients.Add(1)),
		Metadata: map[string]string{xds.MetaNamespace: ns}}.JSON()
	if err != nil {
		r.t.Fatal(err)
	}
	return meshtest.XDSClient(r.t, bs, target, nil)
}

// load is continuous traffic from xDS clients (meshtest.Load).
type load = meshtest.Load

// startLoad calls the service continuously from conc goroutines, each
// pausing between calls, and remembers what it saw.
func (r *rig) startLoad(c testgrpc.TestServiceClient, conc int, pause time.Duration) *load {
	return meshtest.StartLoad(r.t, conc, pause, func(ctx context.Context) (string, error) {
		var resp *testgrpc.SimpleResponse
		var err error
		if tel := r.tel.Load(); tel != nil {
			resp, err = tel.clientCall(ctx, c, grpc.WaitForReady(true))
		} else {
			resp, err = c.UnaryCall(ctx, &testgrpc.SimpleRequest{}, grpc.WaitForReady(true))
		}
		return resp.GetHostname(), err
	})
}

// breakCandidate makes every call to the candidate (v2) fail and waits for
// the rollout to roll back and for clients to see only stable (v1). It
// returns the rolled-back status and the time from the first bad response
// the clients of l saw to the last non-stable one.
func (r *rig) breakCandidate(l *load, name string) (Status, time.Duration) {
	r.t.Helper()
	r.v2.FailCode.Store(int32(codes.Unavailable))
	broke := time.Now()
	st := r.waitState(name, RolledBack, 30*time.Second)
	firstBad, ok := l.FirstAfter(broke, "error")
	if !ok {
		r.t.Fatal("clients never saw an error from the failing candidate")
	}
	// Clients see only stable once a run of responses, all from v1, ends
	// the record.
	meshtest.Eventually(r.t, 30*time.Second, "clients see only stable", func() error {
		if last := l.LastNot("v1"); time.Since(last) < time.Second {
			return fmt.Errorf("last non-stable response at %v", last.Format("15:04:05.000"))
		}
		return nil
	})
	return st, l.LastNot("v1").Sub(firstBad)
}
