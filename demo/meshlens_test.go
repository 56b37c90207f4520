package demo

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/meshlens/meshlens/app/apptest"
	"github.com/meshlens/meshlens/auth"
	"github.com/meshlens/meshlens/controlplane/xds"
)

// TestDemoRunsOnMeshlensControlPlane runs the demo against meshlens' own
// control plane (config API with operator auth, durable store, validation,
// Istio → xDS translation, ADS server), built by package app as `meshlens
// serve` builds it: the
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
	ml := apptest.Start(t)
	store := ml.App.ConfigStore()

	col := startCollector(t)
	cfg := DefaultConfig()
	cfg.BasePort = 0
	cfg.XDS = ml.Config.XDS
	cfg.Collector = col.addr
	cfg.Server = ml.URL
	cfg.TokenFile = auth.TokenPath(ml.Config.DataDir)
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
	for _, p := range proxies(t, ml.URL) {
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
		a := &Applier{Server: ml.URL, TokenFile: cfg.TokenFile, RetryEvery: 50 * time.Millisecond}
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

// proxies is meshlens' list of connected xDS nodes (GET /api/v1/proxies).
func proxies(t *testing.T, url string) []xds.ProxyStatus {
	t.Helper()
	resp, err := http.Get(url + "/api/v1/proxies")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ps []xds.ProxyStatus
	if err := json.NewDecoder(resp.Body).Decode(&ps); err != nil {
		t.Fatalf("GET /api/v1/proxies: %v", err)
	}
	return ps
}
