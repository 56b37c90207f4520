package demo

import (
	"context"
	"log/slog"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/meshlens/meshlens/auth"
	"github.com/meshlens/meshlens/controlplane/config"
	"github.com/meshlens/meshlens/controlplane/xds"
)

// TestDemoRunsOnMeshlensControlPlane runs the demo against meshlens' own
// control plane (config API with operator auth, durable store, validation,
// Istio → xDS translation, ADS server), as `meshlens serve` wires it: the
// demo's config must be accepted as it is, and its translation must route
// every hop of the mesh and honour the reviews split.
func TestDemoRunsOnMeshlensControlPlane(t *testing.T) {
	for _, tt := range []struct {
		name       string
		xdsServers bool
	}{
		{"plain gRPC servers", false},
		{"xDS-managed gRPC servers", true},
	} {
		t.Run(tt.name, func(t *testing.T) { runOnMeshlensControlPlane(t, tt.xdsServers) })
	}
}

func runOnMeshlensControlPlane(t *testing.T, xdsServers bool) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	dataDir := t.TempDir()

	kinds, err := config.NewKinds(config.IstioKinds(config.IstioOptions{})...)
	if err != nil {
		t.Fatal(err)
	}
	store, err := config.Open(dataDir, kinds, logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	xs, err := xds.NewServer(ctx, logger, nil, xds.Options{})
	if err != nil {
		t.Fatal(err)
	}
	stopPush := store.Subscribe(func(sn *config.Snapshot) {
		if err := xs.Update(sn); err != nil {
			t.Errorf("xDS update: %v", err)
		}
	})
	defer stopPush()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go xs.ServeListener(ctx, lis)

	authz, err := auth.Load(auth.Config{DataDir: dataDir}, logger)
	if err != nil {
		t.Fatal(err)
	}
	e := echo.New()
	config.RegisterRoutes(e.Group("/api/v1", authz.Viewer(false)), store, authz.Operator())
	api := httptest.NewServer(e)
	defer api.Close()

	col := startCollector(t)
	cfg := DefaultConfig()
	cfg.BasePort = 0
	cfg.XDS = lis.Addr().String()
	cfg.Collector = col.addr
	cfg.Server = api.URL
	cfg.TokenFile = auth.TokenPath(dataDir)
	cfg.Control = ""
	cfg.Rate = 50
	cfg.StatusEvery = 0
	cfg.TraceBatchTimeout = 100 * time.Millisecond
	cfg.ReviewsSplit = map[string]uint32{"v1": 10, "v2": 45, "v3": 45}
	cfg.XDSServers = xdsServers
	sctx, scancel := context.WithTimeout(ctx, 20*time.Second)
	defer scancel()
	d, err := Start(sctx, cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := d.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	}
	defer stop()

	if n := len(store.Snapshot().Objects); n != 15 {
		t.Errorf("meshlens holds %d objects after the demo applied its config, want 15", n)
	}
	s := waitStats(t, d, "every reviews version to serve through meshlens' xDS", func(s Stats) bool {
		return s.OK >= 100 && s.ByReview["v1"] >= 5 && s.ByReview["v2"] >= 5 && s.ByReview["v3"] >= 5
	})
	if s.Errors != 0 {
		t.Errorf("%d errors without faults (last: %s)", s.Errors, s.LastError)
	}
	// The split is 10/45/45: v1 must get the smallest share. A loose,
	// order-only check; the control plane's own tests measure weights.
	if s.ByReview["v1"] >= s.ByReview["v2"] || s.ByReview["v1"] >= s.ByReview["v3"] {
		t.Errorf("reviews by version %v: v1 (10%%) not below v2 and v3 (45%% each)", s.ByReview)
	}

	var connected []string
	for _, p := range xs.Proxies() {
		connected = append(connected, p.ID)
	}
	workloads := []string{"loadgen", "productpage-v1", "reviews-v2", "reviews-v3"}
	if xdsServers { // every server fetches its inbound listener
		workloads = append(workloads, "details-v1", "reviews-v1", "ratings-v1")
	}
	for _, w := range workloads {
		if !strings.Contains(strings.Join(connected, " "), "~"+w+".bookinfo~") {
			t.Errorf("workload %s not among meshlens' xDS proxies %v", w, connected)
		}
	}

	if xdsServers {
		// The servers follow inbound config too: deny every call to ratings,
		// and reviews v2/v3, which call it, start failing.
		a := &Applier{Server: api.URL, TokenFile: cfg.TokenFile, RetryEvery: 50 * time.Millisecond}
		deny := []byte(`apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-ratings, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: ratings}}
  action: DENY
  rules: [{}]
`)
		if err := a.Apply(sctx, deny); err != nil {
			t.Fatalf("apply AuthorizationPolicy: %v", err)
		}
		waitStats(t, d, "calls to ratings to be denied", func(s Stats) bool { return s.ByCode["PermissionDenied"] >= 10 })
	}

	stop()
	edges := map[string]int{}
	for _, p := range pairs(col.Spans()) {
		edges[p.client.resource["service.name"]+" -> "+peerOf(p.server)]++
	}
	for _, e := range []string{"loadgen -> productpage:v1", "productpage -> details:v1", "productpage -> reviews:v1",
		"productpage -> reviews:v2", "productpage -> reviews:v3", "reviews -> ratings:v1"} {
		if edges[e] == 0 {
			t.Errorf("no span pair for %s; pairs %v", e, edges)
		}
	}
}
