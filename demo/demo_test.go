package demo

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"sigs.k8s.io/yaml"
)

// configAPI stands in for meshlens' config API: it checks the operator
// token, refuses the first `unavailable` posts with 503 (meshlens still
// starting), then reads the posted Istio objects and publishes matching
// routes on the test control plane, so what the demo posts is what routes it.
type configAPI struct {
	*httptest.Server
	cp        *controlPlane
	token     string
	namespace string

	mu          sync.Mutex
	unavailable int
	attempts    int
	kinds       map[string]int
	endpoints   []Endpoint
}

func startConfigAPI(t *testing.T, cp *controlPlane, token, namespace string, unavailable int) *configAPI {
	t.Helper()
	api := &configAPI{cp: cp, token: token, namespace: namespace, unavailable: unavailable, kinds: map[string]int{}}
	api.Server = httptest.NewServer(http.HandlerFunc(api.serve(t)))
	t.Cleanup(api.Close)
	return api
}

type istioDoc struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name, Namespace string
	} `json:"metadata"`
	Spec struct {
		Hosts  []string          `json:"hosts"`
		Ports  json.RawMessage   `json:"ports"`
		Labels map[string]string `json:"labels"`
		HTTP   []struct {
			Route []struct {
				Destination struct{ Host, Subset string } `json:"destination"`
				Weight      uint32                        `json:"weight"`
			} `json:"route"`
		} `json:"http"`
	} `json:"spec"`
}

func (api *configAPI) serve(t *testing.T) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		api.mu.Lock()
		defer api.mu.Unlock()
		api.attempts++
		if r.Method != http.MethodPost || r.URL.Path != "/api/v1/config" {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		if r.Header.Get("Authorization") != "Bearer "+api.token {
			http.Error(w, `{"error":"unauthorized"}`, http.StatusUnauthorized)
			return
		}
		if api.unavailable > 0 {
			api.unavailable--
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		body, _ := io.ReadAll(r.Body)
		reviews := map[string]uint32{}
		var endpoints []Endpoint
		for _, doc := range strings.Split(string(body), "\n---\n") {
			var d istioDoc
			if err := yaml.Unmarshal([]byte(doc), &d); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			if d.Metadata.Namespace != api.namespace {
				http.Error(w, fmt.Sprintf("%s %s: namespace %q", d.Kind, d.Metadata.Name, d.Metadata.Namespace), http.StatusBadRequest)
				return
			}
			api.kinds[d.Kind]++
			switch d.Kind {
			case "WorkloadEntry":
				var ports map[string]int
				if err := json.Unmarshal(d.Spec.Ports, &ports); err != nil || ports["grpc"] == 0 {
					http.Error(w, fmt.Sprintf("WorkloadEntry %s: ports %s", d.Metadata.Name, d.Spec.Ports), http.StatusBadRequest)
					return
				}
				endpoints = append(endpoints, Endpoint{
					Instance: Instance{Service: d.Spec.Labels["app"], Version: d.Spec.Labels["version"]},
					Port:     ports["grpc"],
				})
			case "VirtualService":
				for _, rt := range d.Spec.HTTP[0].Route {
					reviews[rt.Destination.Subset] = rt.Weight
				}
			}
		}
		api.endpoints = endpoints
		api.cp.push(t, api.namespace, DefaultConfig().ServicePort, endpoints, reviews)
		w.WriteHeader(http.StatusOK)
	}
}

// fixture is one demo wired to a real control plane, a real OTLP endpoint
// and the config API above.
type fixture struct {
	cp   *controlPlane
	col  *otlpSink
	api  *configAPI
	demo *Demo
	cfg  Config
}

func startDemo(t *testing.T, tweak func(*Config)) *fixture {
	t.Helper()
	f := &fixture{cp: startControlPlane(t), col: startCollector(t)}
	tokenFile := filepath.Join(t.TempDir(), "operator.token")
	if err := os.WriteFile(tokenFile, []byte("test-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f.api = startConfigAPI(t, f.cp, "test-token", "bookinfo", 2)
	cfg := DefaultConfig()
	cfg.BasePort = 0
	cfg.XDS = f.cp.addr
	cfg.Collector = f.col.addr
	cfg.Server = f.api.URL
	cfg.TokenFile = tokenFile
	cfg.Control = "127.0.0.1:0"
	cfg.Rate = 50
	cfg.StatusEvery = 0
	cfg.TraceBatchTimeout = 100 * time.Millisecond
	cfg.ApplyRetryEvery = 20 * time.Millisecond
	if tweak != nil {
		tweak(&cfg)
	}
	f.cfg = cfg
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, err := Start(ctx, cfg, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	f.demo = d
	t.Cleanup(func() { f.stop(t) })
	return f
}

func (f *fixture) stop(t *testing.T) {
	t.Helper()
	if f.demo == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := f.demo.Stop(ctx); err != nil {
		t.Errorf("stop: %v", err)
	}
	f.demo = nil
}

// waitStats polls the load generator until cond holds or the deadline passes.
func waitStats(t *testing.T, d *Demo, what string, cond func(Stats) bool) Stats {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := d.Stats()
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; stats %+v", what, s)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// spanPair is a client span and the server span it caused.
type spanPair struct{ client, server receivedSpan }

func pairs(spans []receivedSpan) []spanPair {
	servers := map[string]receivedSpan{}
	for _, s := range spans {
		if s.span.GetKind() == tracepb.Span_SPAN_KIND_SERVER {
			servers[hex.EncodeToString(s.span.GetTraceId())+"/"+hex.EncodeToString(s.span.GetParentSpanId())] = s
		}
	}
	var out []spanPair
	for _, c := range spans {
		if c.span.GetKind() != tracepb.Span_SPAN_KIND_CLIENT {
			continue
		}
		if s, ok := servers[hex.EncodeToString(c.span.GetTraceId())+"/"+hex.EncodeToString(c.span.GetSpanId())]; ok {
			out = append(out, spanPair{client: c, server: s})
		}
	}
	return out
}

func peerOf(s receivedSpan) string {
	return s.resource["service.name"] + ":" + s.resource["service.version"]
}

func TestDemoRoutesCallsThroughXDSAndReportsPairedSpans(t *testing.T) {
	f := startDemo(t, func(c *Config) { c.ReviewsSplit = map[string]uint32{"v1": 34, "v2": 33, "v3": 33} })

	s := waitStats(t, f.demo, "every reviews version to serve", func(s Stats) bool {
		return s.OK >= 100 && s.ByReview["v1"] >= 5 && s.ByReview["v2"] >= 5 && s.ByReview["v3"] >= 5
	})
	if s.Errors != 0 {
		t.Errorf("errors without faults: %+v", s.ByCode)
	}

	// The config went through the API, after waiting for it to answer.
	f.api.mu.Lock()
	attempts, kinds := f.api.attempts, f.api.kinds
	f.api.mu.Unlock()
	if attempts != 3 {
		t.Errorf("config API attempts = %d, want 3 (two 503s, then accepted)", attempts)
	}
	want := map[string]int{"ServiceEntry": 4, "WorkloadEntry": 6, "DestinationRule": 4, "VirtualService": 1}
	for k, n := range want {
		if kinds[k] != n {
			t.Errorf("posted %d %s, want %d (all: %v)", kinds[k], k, n, kinds)
		}
	}

	// Every workload that calls out has its own xDS node, marked proxyless.
	nodes := f.cp.Nodes()
	for _, w := range []string{"loadgen", "productpage-v1", "reviews-v2", "reviews-v3"} {
		id := fmt.Sprintf("sidecar~127.0.0.1~%s.bookinfo~bookinfo.svc.cluster.local", w)
		n, ok := nodes[id]
		if !ok {
			t.Errorf("no xDS node %s; have %v", id, nodes)
			continue
		}
		if g := n.GetMetadata().GetFields()["GENERATOR"].GetStringValue(); g != "grpc" {
			t.Errorf("node %s GENERATOR = %q, want grpc", id, g)
		}
	}
	for id := range nodes {
		for _, leaf := range []string{"details-v1", "reviews-v1", "ratings-v1"} {
			if strings.Contains(id, leaf) {
				t.Errorf("leaf workload %s connected to xDS although it calls nothing", leaf)
			}
		}
	}

	f.stop(t) // flushes the traces
	edges := map[string]int{}
	for _, p := range pairs(f.col.Spans()) {
		edges[p.client.resource["service.name"]+" -> "+peerOf(p.server)]++
		for _, s := range []receivedSpan{p.client, p.server} {
			if ns := s.resource["k8s.namespace.name"]; ns != "bookinfo" {
				t.Fatalf("span of %s: k8s.namespace.name %q", peerOf(s), ns)
			}
			want := s.resource["service.name"] + "-" + s.resource["service.version"]
			if s.resource["service.name"] == "loadgen" {
				want = "loadgen"
			}
			if wl := s.resource["k8s.deployment.name"]; wl != want {
				t.Fatalf("span of %s: k8s.deployment.name %q, want %q", peerOf(s), wl, want)
			}
			if code, ok := intAttr(s.span.GetAttributes(), "rpc.grpc.status_code"); !ok || code != 0 {
				t.Fatalf("span of %s: rpc.grpc.status_code = %d (present %v), want 0", peerOf(s), code, ok)
			}
		}
		attrs := stringAttrs(p.client.span.GetAttributes())
		if want := Host(p.server.resource["service.name"], "bookinfo"); attrs["server.address"] != want || attrs["peer.service"] != p.server.resource["service.name"] {
			t.Fatalf("client span to %s: server.address %q, peer.service %q; want %q and the service", peerOf(p.server), attrs["server.address"], attrs["peer.service"], want)
		}
		if attrs["rpc.system"] != "grpc" {
			t.Fatalf("client span to %s: rpc.system %q", peerOf(p.server), attrs["rpc.system"])
		}
		if p.client.resource["service.name"] == "reviews" && p.client.resource["service.version"] == "v1" {
			t.Errorf("reviews v1 called %s; only v2 and v3 call ratings", peerOf(p.server))
		}
	}
	for _, e := range []string{
		"loadgen -> productpage:v1",
		"productpage -> details:v1",
		"productpage -> reviews:v1",
		"productpage -> reviews:v2",
		"productpage -> reviews:v3",
		"reviews -> ratings:v1",
	} {
		if edges[e] == 0 {
			t.Errorf("no client/server span pair for %s; pairs: %v", e, edges)
		}
	}
	if len(edges) != 6 {
		t.Errorf("span pairs on %d edges, want 6: %v", len(edges), edges)
	}
}

func TestDemoFollowsRoutingPushedByControlPlane(t *testing.T) {
	f := startDemo(t, func(c *Config) { c.ReviewsSplit = map[string]uint32{"v1": 100} })
	waitStats(t, f.demo, "reviews v1 to serve", func(s Stats) bool { return s.ByReview["v1"] >= 30 })
	if s := f.demo.Stats(); s.ByReview["v2"]+s.ByReview["v3"] != 0 {
		t.Fatalf("reviews v2/v3 served with a 100%% v1 route: %v", s.ByReview)
	}
	f.api.mu.Lock()
	endpoints := f.api.endpoints
	f.api.mu.Unlock()
	f.cp.push(t, "bookinfo", f.cfg.ServicePort, endpoints, map[string]uint32{"v3": 100})
	waitStats(t, f.demo, "reviews v3 to serve after the push", func(s Stats) bool { return s.ByReview["v3"] >= 30 })
}

func TestDemoFaultFlagsFailAndSlowTheNamedVersion(t *testing.T) {
	const delay = 300 * time.Millisecond
	f := startDemo(t, func(c *Config) {
		c.ReviewsSplit = map[string]uint32{"v2": 50, "v3": 50}
		c.Faults = map[VersionKey]Fault{
			{"reviews", "v3"}: {ErrorRate: 1},
			{"reviews", "v2"}: {Delay: delay},
		}
	})
	s := waitStats(t, f.demo, "failures from v3 and successes from v2", func(s Stats) bool { return s.Errors >= 20 && s.OK >= 20 })
	if s.ByReview["v3"] != 0 {
		t.Errorf("reviews v3 succeeded %d times with errorRate 1", s.ByReview["v3"])
	}
	if s.ByCode["Unavailable"] != s.Errors {
		t.Errorf("errors by code %v: want all Unavailable", s.ByCode)
	}

	// Clearing the fault at runtime lets v3 serve again.
	base := "http://" + f.demo.ControlAddr()
	put := func(path string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPut, base+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := put("/fault?service=reviews&version=v3&errorRate=0"); resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT /fault: %s", resp.Status)
	}
	waitStats(t, f.demo, "reviews v3 to serve once its fault is cleared", func(s Stats) bool { return s.ByReview["v3"] >= 10 })

	f.stop(t)
	var slowV2, failedV3 int
	for _, rs := range f.col.Spans() {
		if rs.span.GetKind() != tracepb.Span_SPAN_KIND_SERVER || rs.resource["service.name"] != "reviews" {
			continue
		}
		d := time.Duration(rs.span.GetEndTimeUnixNano() - rs.span.GetStartTimeUnixNano())
		switch rs.resource["service.version"] {
		case "v2":
			// A lower bound: the injected delay always elapses before v2 answers.
			if d < delay {
				t.Errorf("reviews v2 server span lasted %v, want at least the injected %v", d, delay)
			}
			slowV2++
		case "v3":
			if code, _ := intAttr(rs.span.GetAttributes(), "rpc.grpc.status_code"); code == 14 {
				failedV3++
			}
		}
	}
	if slowV2 == 0 || failedV3 == 0 {
		t.Errorf("server spans: %d from slow reviews v2, %d Unavailable from reviews v3; want both > 0", slowV2, failedV3)
	}
}

func TestControlEndpoint(t *testing.T) {
	d := &Demo{cfg: DefaultConfig(), logger: slog.New(slog.DiscardHandler), faults: NewFaults(nil), load: newLoadGen(nil, 20, time.Second)}
	srv := httptest.NewServer(d.ControlHandler())
	defer srv.Close()
	tests := []struct {
		name, method, path string
		wantCode           int
		check              func(t *testing.T)
	}{
		{"rate changes the load rate", http.MethodPut, "/rate?rps=50", 200, func(t *testing.T) {
			if r := d.load.Rate(); r != 50 {
				t.Errorf("rate = %v, want 50", r)
			}
		}},
		{"negative rate is refused", http.MethodPut, "/rate?rps=-1", 400, nil},
		{"missing rate is refused", http.MethodPut, "/rate", 400, nil},
		{"NaN rate is refused", http.MethodPut, "/rate?rps=NaN", 400, nil},
		{"fault sets error rate and delay", http.MethodPut, "/fault?service=reviews&version=v3&errorRate=0.5&delay=300ms", 200, func(t *testing.T) {
			if f := d.faults.Get(VersionKey{"reviews", "v3"}); f != (Fault{ErrorRate: 0.5, Delay: 300 * time.Millisecond}) {
				t.Errorf("fault = %+v", f)
			}
		}},
		{"zero fault clears it", http.MethodPut, "/fault?service=reviews&version=v3&errorRate=0&delay=0s", 200, func(t *testing.T) {
			if all := d.faults.All(); len(all) != 0 {
				t.Errorf("faults = %v, want none", all)
			}
		}},
		{"unknown workload is refused", http.MethodPut, "/fault?service=reviews&version=v9&errorRate=0.5", 400, nil},
		{"error rate above 1 is refused", http.MethodPut, "/fault?service=reviews&version=v2&errorRate=1.5", 400, nil},
		{"bad delay is refused", http.MethodPut, "/fault?service=reviews&version=v2&delay=soon", 400, nil},
		{"status answers", http.MethodGet, "/", 200, nil},
		{"rate needs PUT", http.MethodGet, "/rate?rps=5", 405, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, srv.URL+tt.path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.wantCode {
				t.Fatalf("%s %s: %s %s, want %d", tt.method, tt.path, resp.Status, body, tt.wantCode)
			}
			if tt.check != nil {
				tt.check(t)
			}
		})
	}
}

func TestApplierWaitsForMeshlensAndStopsOnRefusal(t *testing.T) {
	tests := []struct {
		name         string
		answers      []int // status per attempt; the last repeats
		wantErr      string
		wantAttempts int
	}{
		{"accepted after meshlens starts", []int{503, 502, 200}, "", 3},
		{"token not yet valid is retried", []int{401, 200}, "", 2},
		{"invalid config is not retried", []int{400}, "400 Bad Request", 1},
		{"forbidden is not retried", []int{403}, "403 Forbidden", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			attempts := 0
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				defer mu.Unlock()
				code := tt.answers[min(attempts, len(tt.answers)-1)]
				attempts++
				if got := r.Header.Get("Authorization"); got != "Bearer tok" {
					t.Errorf("Authorization = %q", got)
				}
				w.WriteHeader(code)
			}))
			defer srv.Close()
			var logs bytes.Buffer
			a := &Applier{Server: srv.URL, Token: "tok", RetryEvery: 5 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := a.Apply(ctx, []byte("kind: ServiceEntry\n"))
			if tt.wantErr == "" && err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Apply error = %v, want one containing %q", err, tt.wantErr)
			}
			if attempts != tt.wantAttempts {
				t.Errorf("attempts = %d, want %d", attempts, tt.wantAttempts)
			}
			if tt.wantAttempts > 1 && !strings.Contains(logs.String(), "waiting for meshlens at "+srv.URL) {
				t.Errorf("no waiting log line; logs:\n%s", logs.String())
			}
		})
	}
}

func TestApplierGivesUpWhenContextEnds(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nobody listens
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	a := &Applier{Server: url, Token: "tok", RetryEvery: 10 * time.Millisecond}
	if err := a.Apply(ctx, nil); err == nil || !strings.Contains(err.Error(), url) {
		t.Fatalf("Apply with meshlens down = %v, want an error naming %s", err, url)
	}
}
