package kube

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/meshlens/meshlens/auth"
	"github.com/meshlens/meshlens/controlplane/xds"
	"github.com/meshlens/meshlens/internal/kubetest"
	"github.com/meshlens/meshlens/internal/meshtest"
)

// Knobs of BenchmarkRegistryEndpointChurn (defaults: issue 10's scenario).
const (
	churnServicesEnv = "MESHLENS_CHURN_SERVICES" // Services, 5 Pods each (1000)
	churnRateEnv     = "MESHLENS_CHURN_RATE"     // Kubernetes endpoint changes per second (100)
	churnDurationEnv = "MESHLENS_CHURN_DURATION" // how long they are driven (30s)
	churnClientsEnv  = "MESHLENS_CHURN_CLIENTS"  // ADS clients (20)
	churnPostRateEnv = "MESHLENS_CHURN_POST_RATE"
	// churnClientIPsEnv=1 gives every client its own INSTANCE_IPS, as pods
	// have: one translation per client and push instead of one in all.
	churnClientIPsEnv = "MESHLENS_CHURN_CLIENT_IPS"
)

const (
	churnPods       = 5 // per Service at the start
	churnSubsetSvcs = 100
	churnNodes      = 10
)

// BenchmarkRegistryEndpointChurn is issue 10's `make bench` scenario: a
// cluster of 1,000 Services × 5 Pods on the test API server, `meshlens serve
// --kubeconfig` as a child process (its CPU and memory are the control
// plane's alone), raw ADS clients subscribed to EDS for every Service, and
// 100 endpoint changes per second written as kubelet and the endpoint
// controller would (readiness flips, scale up/down, relabels moving a Pod
// between DestinationRule subsets). Each change is timed from the moment
// its write is issued to the API server until the client watching that
// Service has received and ACKed an EDS response showing it. The same kind
// of change made through POST /api/v1/config (a ServiceEntry endpoint
// added or removed) is measured the same way, in the same run, as the
// reference.
//
//	go test ./controlplane/kube -run '^$' -bench EndpointChurn -benchtime 1x -timeout 60m
func BenchmarkRegistryEndpointChurn(b *testing.B) {
	nSvc := envInt(churnServicesEnv, 1000)
	rate := envInt(churnRateEnv, 100)
	postRate := envInt(churnPostRateEnv, 10)
	nClients := envInt(churnClientsEnv, 20)
	dur := 30 * time.Second
	if v := os.Getenv(churnDurationEnv); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("%s: %v", churnDurationEnv, err)
		}
		dur = d
	}

	binc := make(chan buildResult, 1)
	go func() { binc <- buildMeshlens(b.TempDir()) }()

	c := kubetest.Shared(b)
	ctx := context.Background()
	client := fastClient(b, c.Config)
	ns := c.Namespace(b, "churn")
	for i := range churnNodes {
		if err := kubetest.Node(ctx, client, fmt.Sprintf("churn-node-%d", i), "bench", fmt.Sprintf("bench-%c", 'a'+i%3)); err != nil {
			b.Fatal(err)
		}
	}
	start := time.Now()
	svcs := createChurnServices(b, client, ns, nSvc)
	setup := time.Since(start)
	fmt.Printf("churn: %d Services, %d Pods, %d EndpointSlices created in %v\n", nSvc, nSvc*churnPods, nSvc, setup.Round(time.Second))

	bin := <-binc
	if bin.err != nil {
		b.Fatal(bin.err)
	}
	start = time.Now()
	cp := startServe(b, bin.path, c.Kubeconfig)
	fmt.Printf("churn: meshlens serve (pid %d) ready in %v, RSS %.0f MiB\n", cp.pid, time.Since(start).Round(100*time.Millisecond), float64(cp.rss())/(1<<20))

	// DestinationRules give the first Services subsets by version, so a
	// relabel moves a Pod from one subset cluster to the other; one
	// ServiceEntry per client is the POST path's service.
	var cfg strings.Builder
	for _, s := range svcs[:min(churnSubsetSvcs, nSvc)] {
		fmt.Fprintf(&cfg, "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: %s, namespace: %s}\n"+
			"spec:\n  host: %s\n  subsets:\n  - {name: v1, labels: {version: v1}}\n  - {name: v2, labels: {version: v2}}\n---\n",
			s.name, ns, s.host)
	}
	entries := make([]*churnEntry, nClients)
	for i := range entries {
		entries[i] = &churnEntry{key: nSvc + i, index: i, name: fmt.Sprintf("se-%d", i), ns: ns, host: fmt.Sprintf("se-%d.churn.example", i),
			api: cp.api, token: cp.token}
		for j := range churnPods {
			entries[i].addrs = append(entries[i].addrs, fmt.Sprintf("10.200.%d.%d", i, j+1))
		}
		cfg.WriteString(entries[i].yaml())
	}
	if code, body := meshtest.HTTP(b, http.MethodPost, cp.api+"/config", cp.token, cfg.String()); code != http.StatusOK {
		b.Fatalf("POST /api/v1/config: %d %s", code, body)
	}

	rec := &churnRecorder{}
	clients := make([]*churnClient, nClients)
	for i := range clients {
		var keys []int
		var names []string
		for k := i; k < nSvc; k += nClients {
			keys = append(keys, k)
			names = append(names, outbound(svcs[k].host, ""))
			if k < churnSubsetSvcs {
				names = append(names, outbound(svcs[k].host, "v1"), outbound(svcs[k].host, "v2"))
			}
		}
		names = append(names, outbound(entries[i].host, ""))
		ip := ""
		if os.Getenv(churnClientIPsEnv) == "1" {
			ip = fmt.Sprintf("10.250.0.%d", i+1)
		}
		cl, err := dialChurnClient(ctx, cp.xds, fmt.Sprintf("churn-client-%d", i), ns, ip, names, rec)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(cl.close)
		clients[i] = cl
		for _, k := range keys {
			svcs[k].client = cl
		}
		entries[i].client = cl
	}
	cp.clients, cp.cluster = clients, clusterPids(c.Bin)
	if len(cp.cluster) != 2 {
		fmt.Printf("churn: found %d kube-apiserver and etcd processes, want 2: their CPU is not all counted\n", len(cp.cluster))
	}
	meshtest.Eventually(b, 2*time.Minute, "every client has its EDS", func() error {
		for _, cl := range clients {
			if n := cl.clusters(); n != len(cl.names) {
				return fmt.Errorf("%s has %d of %d clusters", cl.id, n, len(cl.names))
			}
		}
		return nil
	})
	fmt.Printf("churn: %d ADS clients hold EDS for %d Services (+%d subset clusters) and %d ServiceEntries; RSS %.0f MiB\n",
		nClients, nSvc, 2*min(churnSubsetSvcs, nSvc), nClients, float64(cp.rss())/(1<<20))

	b.ResetTimer()
	stopSampling := cp.sample()
	apply := func(ch *churnChange) error { return ch.apply(ctx, client) }
	kube := runChurn(cp, rec, "kube", rate, dur, func(r *rand.Rand, issue func(*churnChange) bool) {
		s := svcs[r.IntN(nSvc)]
		for try := 0; !s.tryBusy(); try++ { // a change still in flight: another Service
			if try == 20 {
				return
			}
			s = svcs[r.IntN(nSvc)]
		}
		ch := s.nextChange(r)
		if !issue(ch) {
			s.idle()
		}
	}, apply)
	postDur := min(dur, 20*time.Second)
	post := runChurn(cp, rec, "post", postRate, postDur, func(r *rand.Rand, issue func(*churnChange) bool) {
		e := entries[r.IntN(len(entries))]
		for try := 0; !e.tryBusy(); try++ {
			if try == 20 {
				return
			}
			e = entries[r.IntN(len(entries))]
		}
		if !issue(e.nextChange()) {
			e.idle()
		}
	}, apply)
	peak := stopSampling()
	b.StopTimer()

	hwm := cp.status("VmHWM")
	ratio := func(a, b time.Duration) float64 { return float64(a) / float64(max(b, 1)) }
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "MISSED"
	}
	fmt.Printf("== endpoint churn: %d Services × %d Pods, %d ADS clients on EDS; meshlens serve as a child process; %d CPUs\n",
		nSvc, churnPods, nClients, runtime.NumCPU())
	for _, p := range []*churnPhase{kube, post} {
		p.print()
	}
	fmt.Printf("   Kubernetes vs POST (reference, same run): p50 ×%.2f, p99 ×%.2f, CPU per change ×%.2f\n",
		ratio(kube.q(0.5), post.q(0.5)), ratio(kube.q(0.99), post.q(0.99)), kube.cpuPerChange()/max(post.cpuPerChange(), 1e-9))
	fmt.Printf("   control plane memory: RSS peak %.0f MiB (VmHWM, start included %.0f MiB), Go heap in use peak %.0f MiB\n",
		float64(peak.rss)/(1<<20), float64(hwm)/(1<<20), peak.heap/(1<<20))
	fmt.Printf("   targets: p99 < 1 s: %s (%v); memory < 500 MiB: %s (%.0f MiB)\n",
		verdict(kube.q(0.99) < time.Second && kube.lost == 0), kube.q(0.99).Round(time.Millisecond),
		verdict(hwm < 500<<20), float64(hwm)/(1<<20))
	b.ReportMetric(float64(kube.q(0.99).Microseconds())/1000, "p99-kube-ms")
	b.ReportMetric(float64(post.q(0.99).Microseconds())/1000, "p99-post-ms")
	b.ReportMetric(kube.cpuPerChange()*1000, "cpu-ms/kube-change")
	b.ReportMetric(float64(hwm)/(1<<20), "rss-peak-MiB")
}

func envInt(name string, def int) int {
	if v := os.Getenv(name); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			return n
		}
	}
	return def
}

// fastClient is the cluster's admin client without client-go's rate
// limit: the benchmark's writes are the load.
func fastClient(b *testing.B, cfg *rest.Config) kubernetes.Interface {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = 5000, 5000
	cl, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	return cl
}

func outbound(host, subset string) string { return "outbound|9080|" + subset + "|" + host }

// churnSvc is one Service of the benchmark and its Pods. Only the worker
// applying its change touches it: busy hands it over.
type churnSvc struct {
	k          int
	name, host string
	svc        *corev1.Service
	pods       []*corev1.Pod
	ready      []bool
	slice      *discoveryv1.EndpointSlice // as last written
	nextIP     int                        // last octet of the next scaled-up Pod
	client     *churnClient
	busy       atomic.Bool
}

func (s *churnSvc) tryBusy() bool { return s.busy.CompareAndSwap(false, true) }
func (s *churnSvc) idle()         { s.busy.Store(false) }

func (s *churnSvc) ip(octet int) string {
	return fmt.Sprintf("10.%d.%d.%d", 1+s.k/250, s.k%250, octet)
}

func (s *churnSvc) node() string { return fmt.Sprintf("churn-node-%d", s.k%churnNodes) }

func podLabels(app, version string) map[string]string {
	return map[string]string{"app": app, "version": version}
}

func createChurnServices(b *testing.B, client kubernetes.Interface, ns string, n int) []*churnSvc {
	ctx := context.Background()
	svcs := make([]*churnSvc, n)
	for k := range svcs {
		name := fmt.Sprintf("svc-%d", k)
		svcs[k] = &churnSvc{k: k, name: name, host: name + "." + ns + ".svc.cluster.local", nextIP: churnPods + 1}
	}
	jobs := make(chan *churnSvc)
	errs := make(chan error, 1)
	var done atomic.Int64
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range jobs {
				if err := s.create(ctx, client, ns); err != nil {
					select {
					case errs <- err:
					default:
					}
					continue
				}
				if d := done.Add(1); d%100 == 0 {
					fmt.Printf("churn: %d/%d Services with their Pods and EndpointSlice\n", d, n)
				}
			}
		}()
	}
	for _, s := range svcs {
		jobs <- s
	}
	close(jobs)
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
	return svcs
}

func (s *churnSvc) create(ctx context.Context, client kubernetes.Interface, ns string) error {
	svc, err := client.CoreV1().Services(ns).Create(ctx, service(ns, s.name, corev1.ServicePort{
		Name: "grpc", Port: 9080, Protocol: corev1.ProtocolTCP}), metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create service %s: %w", s.name, err)
	}
	s.svc = svc
	for j := range churnPods {
		version := "v1"
		if j >= 3 {
			version = "v2"
		}
		p, err := kubetest.RunPod(ctx, client, ns, fmt.Sprintf("%s-%d", s.name, j+1), s.node(), s.ip(j+1), podLabels(s.name, version), true)
		if err != nil {
			return err
		}
		s.pods, s.ready = append(s.pods, p), append(s.ready, true)
	}
	return s.writeSlice(ctx, client)
}

// writeSlice writes the Service's slice in one request, as the endpoint
// controller does: created once, then updated from the last one written.
func (s *churnSvc) writeSlice(ctx context.Context, client kubernetes.Interface) error {
	eps := make([]kubetest.Endpoint, len(s.pods))
	for i, p := range s.pods {
		eps[i] = kubetest.Endpoint{Pod: p, Ready: s.ready[i]}
	}
	sl := kubetest.Slice(s.svc, map[string]int32{"grpc": 9080}, eps)
	api := client.DiscoveryV1().EndpointSlices(sl.Namespace)
	var err error
	if s.slice == nil {
		sl, err = api.Create(ctx, sl, metav1.CreateOptions{})
	} else {
		sl.ResourceVersion = s.slice.ResourceVersion
		sl, err = api.Update(ctx, sl, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("endpointslice of %s: %w", s.name, err)
	}
	s.slice = sl
	return nil
}

// churnChange is one endpoint change: apply makes it, starting its clock
// just before the timed write; seen tells whether the EDS of the client
// watching its Service shows it.
type churnChange struct {
	key  int
	kind string
	// prepare runs before the timed write (kubelet's Pod status before the
	// endpoint controller's slice); write is the timed one; after follows
	// it (deleting a scaled-down Pod).
	prepare, write, after func(ctx context.Context, client kubernetes.Interface) error
	seen                  func(st map[string]map[string]corev3.HealthStatus) bool
	done                  func()
	client                *churnClient

	issuedAt time.Time
	wrote    time.Duration
}

func (ch *churnChange) apply(ctx context.Context, client kubernetes.Interface) error {
	if ch.prepare != nil {
		if err := ch.prepare(ctx, client); err != nil {
			return err
		}
	}
	ch.client.expect(ch)
	if err := ch.write(ctx, client); err != nil {
		return err
	}
	ch.client.wrote(ch)
	if ch.after != nil {
		return ch.after(ctx, client)
	}
	return nil
}

func present(cluster, addr string, h corev3.HealthStatus) func(map[string]map[string]corev3.HealthStatus) bool {
	return func(st map[string]map[string]corev3.HealthStatus) bool {
		got, ok := st[cluster][addr]
		return ok && got == h
	}
}

func absent(cluster, addr string) func(map[string]map[string]corev3.HealthStatus) bool {
	return func(st map[string]map[string]corev3.HealthStatus) bool {
		_, ok := st[cluster][addr]
		return !ok
	}
}

// nextChange picks a change for the Service: readiness flips (half),
// scale up or down (three in ten), relabels (the Services with subsets).
func (s *churnSvc) nextChange(r *rand.Rand) *churnChange {
	ch := &churnChange{key: s.k, client: s.client, done: s.idle}
	all := outbound(s.host, "")
	x, i := r.IntN(10), r.IntN(len(s.pods))
	switch {
	case x < 2 && s.k < churnSubsetSvcs && s.ready[i]:
		p := s.pods[i]
		from, to := p.Labels["version"], "v2"
		if from == "v2" {
			to = "v1"
		}
		ch.kind = "relabel"
		ch.write = func(ctx context.Context, client kubernetes.Interface) error {
			q := p.DeepCopy()
			q.Labels = podLabels(s.name, to)
			out, err := client.CoreV1().Pods(q.Namespace).Update(ctx, q, metav1.UpdateOptions{})
			if err != nil {
				return fmt.Errorf("relabel pod %s: %w", q.Name, err)
			}
			s.pods[i] = out
			return nil
		}
		addr := p.Status.PodIP
		toSeen, fromGone := present(outbound(s.host, to), addr, corev3.HealthStatus_HEALTHY), absent(outbound(s.host, from), addr)
		ch.seen = func(st map[string]map[string]corev3.HealthStatus) bool { return toSeen(st) && fromGone(st) }
	case x < 5 && len(s.pods) == churnPods:
		ch.kind = "scale-up"
		ip := s.ip(s.nextIP)
		name := fmt.Sprintf("%s-%d", s.name, s.nextIP)
		s.nextIP = churnPods + 1 + (s.nextIP-churnPods)%200
		ch.prepare = func(ctx context.Context, client kubernetes.Interface) error {
			p, err := kubetest.RunPod(ctx, client, s.svc.Namespace, name, s.node(), ip, podLabels(s.name, "v1"), true)
			if err != nil {
				return err
			}
			s.pods, s.ready = append(s.pods, p), append(s.ready, true)
			return nil
		}
		ch.write = s.writeSlice
		ch.seen = present(all, ip, corev3.HealthStatus_HEALTHY)
	case x < 5 && s.ready[len(s.pods)-1]:
		ch.kind = "scale-down"
		p := s.pods[len(s.pods)-1]
		ch.write = func(ctx context.Context, client kubernetes.Interface) error {
			s.pods, s.ready = s.pods[:len(s.pods)-1], s.ready[:len(s.ready)-1]
			return s.writeSlice(ctx, client)
		}
		ch.after = func(ctx context.Context, client kubernetes.Interface) error {
			zero := int64(0)
			return client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
		}
		ch.seen = absent(all, p.Status.PodIP)
	default:
		ready := !s.ready[i]
		ch.kind = "ready"
		if !ready {
			ch.kind = "unready"
		}
		ch.prepare = func(ctx context.Context, client kubernetes.Interface) error {
			p, err := kubetest.SetPodStatus(ctx, client, s.pods[i], s.pods[i].Status.PodIP, ready)
			if err != nil {
				return err
			}
			s.pods[i], s.ready[i] = p, ready
			return nil
		}
		ch.write = s.writeSlice
		addr := s.pods[i].Status.PodIP
		if ready {
			ch.seen = present(all, addr, corev3.HealthStatus_HEALTHY)
		} else {
			ch.seen = absent(all, addr)
		}
	}
	return ch
}

// churnEntry is one ServiceEntry of the POST path, with 5 or 6 endpoints.
type churnEntry struct {
	key, index     int // key among all changed things; index among entries
	name, ns, host string
	api, token     string // serve's, to POST to
	addrs          []string
	client         *churnClient
	busy           atomic.Bool
}

func (e *churnEntry) tryBusy() bool { return e.busy.CompareAndSwap(false, true) }
func (e *churnEntry) idle()         { e.busy.Store(false) }

func (e *churnEntry) yaml() string {
	var eps strings.Builder
	for _, a := range e.addrs {
		fmt.Fprintf(&eps, "  - {address: %s, labels: {version: v1}}\n", a)
	}
	return fmt.Sprintf("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: %s, namespace: %s}\n"+
		"spec:\n  hosts: [%s]\n  location: MESH_INTERNAL\n  resolution: STATIC\n  ports:\n  - {number: 9080, name: grpc, protocol: GRPC}\n"+
		"  endpoints:\n%s---\n", e.name, e.ns, e.host, eps.String())
}

// nextChange adds a sixth endpoint or removes it, as a scale up or down.
func (e *churnEntry) nextChange() *churnChange {
	ch := &churnChange{key: e.key, client: e.client, done: e.idle}
	cluster := outbound(e.host, "")
	addrs := slices.Clone(e.addrs)
	if len(addrs) == churnPods {
		addr := fmt.Sprintf("10.200.%d.%d", e.index, 100)
		addrs = append(addrs, addr)
		ch.kind, ch.seen = "se-add", present(cluster, addr, corev3.HealthStatus_HEALTHY)
	} else {
		addr := addrs[len(addrs)-1]
		addrs = addrs[:len(addrs)-1]
		ch.kind, ch.seen = "se-remove", absent(cluster, addr)
	}
	ch.write = func(context.Context, kubernetes.Interface) error {
		e.addrs = addrs
		code, resp := postConfig(e.api, e.token, e.yaml())
		if code != http.StatusOK {
			return fmt.Errorf("POST /api/v1/config: %d %s", code, resp)
		}
		return nil
	}
	return ch
}

func postConfig(api, token, body string) (int, string) {
	req, err := http.NewRequest(http.MethodPost, api+"/config", strings.NewReader(body))
	if err != nil {
		return 0, err.Error()
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var out bytes.Buffer
	_, _ = out.ReadFrom(resp.Body)
	return resp.StatusCode, out.String()
}

// churnRecorder collects the measured changes of every phase.
type churnRecorder struct {
	mu       sync.Mutex
	latency  map[string][]time.Duration // phase → change-to-ACK, from the write issued
	returned map[string][]time.Duration // phase → change-to-ACK, from the write returned
	writes   map[string][]time.Duration // phase → the timed write's duration
	byKind   map[string]int
	curPhase string
}

func (r *churnRecorder) record(ch *churnChange, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.latency == nil {
		r.latency, r.returned, r.writes = map[string][]time.Duration{}, map[string][]time.Duration{}, map[string][]time.Duration{}
		r.byKind = map[string]int{}
	}
	r.latency[r.curPhase] = append(r.latency[r.curPhase], at.Sub(ch.issuedAt))
	// Seen before the write's answer arrived: counted as 0.
	r.returned[r.curPhase] = append(r.returned[r.curPhase], max(0, at.Sub(ch.issuedAt)-ch.wrote))
	r.writes[r.curPhase] = append(r.writes[r.curPhase], ch.wrote)
	r.byKind[ch.kind]++
}

// churnPhase is one path's measurement.
type churnPhase struct {
	name                  string
	rate                  int
	dur                   time.Duration
	issued, skipped, lost int
	errors                []string
	latency, writes       []time.Duration
	returned              []time.Duration
	cpu                   time.Duration
	apiCPU, selfCPU       time.Duration // kube-apiserver + etcd; this process (writers, ADS clients)
	load                  [2]string     // /proc/loadavg's 1-minute figure at start and end
	kinds                 map[string]int
	metrics               map[string]float64 // control-plane counters over the phase
}

func (p *churnPhase) q(f float64) time.Duration { return quantile(p.latency, f) }

func (p *churnPhase) cpuPerChange() float64 {
	return p.cpu.Seconds() / float64(max(len(p.latency), 1))
}

func quantile(d []time.Duration, f float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(f*float64(len(s))))]
}

func (p *churnPhase) print() {
	label := map[string]string{
		"kube": "Kubernetes (Pod + EndpointSlice writes)",
		"post": "POST /api/v1/config (ServiceEntry)",
	}[p.name]
	ms := func(d time.Duration) string {
		return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 0, 64) + " ms"
	}
	fmt.Printf("   %-40s %d changes in %v (%.1f/s asked %d/s, %d skipped, %d lost, %d errors)\n",
		label, len(p.latency), p.dur.Round(time.Second), float64(p.issued)/p.dur.Seconds(), p.rate, p.skipped, p.lost, len(p.errors))
	fmt.Printf("   %-40s change → ACK p50 %s, p99 %s, max %s; the write itself p50 %s, p99 %s; from its answer to ACK p50 %s, p99 %s\n", "",
		ms(p.q(0.5)), ms(p.q(0.99)), ms(quantile(p.latency, 1)),
		ms(quantile(p.writes, 0.5)), ms(quantile(p.writes, 0.99)), ms(quantile(p.returned, 0.5)), ms(quantile(p.returned, 0.99)))
	pushes, pushSum := p.metrics["meshlens_xds_push_duration_seconds_count"], p.metrics["meshlens_xds_push_duration_seconds_sum"]
	builds, buildSum := p.metrics["meshlens_kube_registry_build_seconds_count"], p.metrics["meshlens_kube_registry_build_seconds_sum"]
	fmt.Printf("   %-40s CPU %.1f s (%.1f ms per change, %.0f ms per push, %.0f%% of a core); %.0f xDS pushes (mean %.0f ms), %.0f registry builds (mean %.0f ms), %.0f EDS responses; kinds %v\n", "",
		p.cpu.Seconds(), p.cpuPerChange()*1000, 1000*p.cpu.Seconds()/max(pushes, 1), 100*p.cpu.Seconds()/p.dur.Seconds(),
		pushes, 1000*pushSum/max(pushes, 1), builds, 1000*buildSum/max(builds, 1), p.metrics[`meshlens_xds_pushes_total{type="eds"}`], p.kinds)
	fmt.Printf("   %-40s beside it: kube-apiserver + etcd %.1f s CPU, this benchmark's writers and clients %.1f s; load average %s → %s on %d CPUs\n", "",
		p.apiCPU.Seconds(), p.selfCPU.Seconds(), p.load[0], p.load[1], runtime.NumCPU())
	for i, e := range p.errors {
		if i == 5 {
			break
		}
		fmt.Printf("   %-40s error: %s\n", "", e)
	}
}

// runChurn drives one path at rate changes per second for dur: each tick
// next picks a change (an idle Service) and hands it to a worker that
// applies it with do. Then it waits for the last changes to be seen.
func runChurn(cp *serveProc, rec *churnRecorder, name string, rate int, dur time.Duration,
	next func(r *rand.Rand, issue func(*churnChange) bool), do func(*churnChange) error) *churnPhase {
	p := &churnPhase{name: name, rate: rate, dur: dur}
	rec.mu.Lock()
	rec.curPhase, rec.byKind = name, map[string]int{}
	rec.mu.Unlock()
	before, cpu0, api0, self0 := cp.metrics(), cp.cpu(), cp.clusterCPU(), selfCPU()
	p.load[0] = loadavg()

	// A change is up to three API round trips, a second on a busy API
	// server: enough workers that the rate is kept.
	jobs := make(chan *churnChange, rate)
	var errMu sync.Mutex
	var wg sync.WaitGroup
	for range max(32, rate) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ch := range jobs {
				if err := do(ch); err != nil {
					ch.client.forget(ch)
					ch.done()
					errMu.Lock()
					p.errors = append(p.errors, fmt.Sprintf("%s %d: %v", ch.kind, ch.key, err))
					errMu.Unlock()
				}
			}
		}()
	}
	r := rand.New(rand.NewPCG(uint64(len(name)), 10))
	tick := time.NewTicker(time.Second / time.Duration(rate))
	end := time.Now().Add(dur)
	for now := range tick.C {
		if now.After(end) {
			break
		}
		issued := false
		next(r, func(ch *churnChange) bool {
			select {
			case jobs <- ch:
				issued = true
				return true
			default:
				return false
			}
		})
		if issued {
			p.issued++
		} else {
			p.skipped++
		}
	}
	tick.Stop()
	close(jobs)
	wg.Wait()
	deadline := time.Now().Add(30 * time.Second)
	for cp.pending() > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	p.lost = cp.pending()
	p.cpu, p.apiCPU, p.selfCPU, p.load[1] = cp.cpu()-cpu0, cp.clusterCPU()-api0, selfCPU()-self0, loadavg()
	after := cp.metrics()
	p.metrics = map[string]float64{}
	for k, v := range after {
		p.metrics[k] = v - before[k]
	}
	rec.mu.Lock()
	p.latency, p.returned, p.writes, p.kinds = rec.latency[name], rec.returned[name], rec.writes[name], rec.byKind
	rec.mu.Unlock()
	for _, cl := range cp.clients {
		cl.forgetAll()
	}
	return p
}

// churnClient is a raw ADS stream standing for a proxyless gRPC client:
// it subscribes to EDS for its clusters, ACKs every response and checks
// the changes it waits for against what it holds.
type churnClient struct {
	id     string
	names  []string
	cc     *grpc.ClientConn
	stream discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	rec    *churnRecorder
	cancel context.CancelFunc

	mu      sync.Mutex
	state   map[string]map[string]corev3.HealthStatus // cluster → address → health
	waiting map[int]*churnChange                      // by Service key
}

func dialChurnClient(ctx context.Context, addr, id, ns, ip string, names []string, rec *churnRecorder) (*churnClient, error) {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		return nil, err
	}
	meta := map[string]any{xds.MetaGenerator: "grpc", xds.MetaNamespace: ns}
	if ip != "" {
		meta[xds.MetaInstanceIPs] = ip
	}
	md, err := structpb.NewStruct(meta)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	s, err := discovery.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	if err != nil {
		cancel()
		cc.Close()
		return nil, fmt.Errorf("ads stream %s: %w", id, err)
	}
	cl := &churnClient{id: id, names: names, cc: cc, stream: s, rec: rec, cancel: cancel,
		state: map[string]map[string]corev3.HealthStatus{}, waiting: map[int]*churnChange{}}
	if err := s.Send(&discovery.DiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNames: names,
		Node: &corev3.Node{Id: id, UserAgentName: "gRPC Go", Metadata: md}}); err != nil {
		cancel()
		cc.Close()
		return nil, fmt.Errorf("subscribe %s: %w", id, err)
	}
	go cl.run()
	return cl, nil
}

func (cl *churnClient) close() { cl.cancel(); cl.cc.Close() }

func (cl *churnClient) run() {
	for {
		resp, err := cl.stream.Recv()
		if err != nil {
			return
		}
		if err := cl.stream.Send(&discovery.DiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResourceNames: cl.names,
			VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}); err != nil {
			return
		}
		at := time.Now() // received and ACKed
		got := map[string]map[string]corev3.HealthStatus{}
		for _, a := range resp.GetResources() {
			var cla endpointv3.ClusterLoadAssignment
			if err := a.UnmarshalTo(&cla); err != nil {
				continue
			}
			eps := map[string]corev3.HealthStatus{}
			for _, l := range cla.GetEndpoints() {
				for _, e := range l.GetLbEndpoints() {
					eps[e.GetEndpoint().GetAddress().GetSocketAddress().GetAddress()] = e.GetHealthStatus()
				}
			}
			got[cla.GetClusterName()] = eps
		}
		cl.mu.Lock()
		for k, v := range got {
			cl.state[k] = v
		}
		for k, ch := range cl.waiting {
			if ch.seen(cl.state) {
				delete(cl.waiting, k)
				cl.rec.record(ch, at)
				ch.done()
			}
		}
		cl.mu.Unlock()
	}
}

// expect starts a change's clock, just before its timed write is issued.
func (cl *churnClient) expect(ch *churnChange) {
	cl.mu.Lock()
	ch.issuedAt = time.Now()
	cl.waiting[ch.key] = ch
	cl.mu.Unlock()
}

func (cl *churnClient) wrote(ch *churnChange) {
	cl.mu.Lock()
	ch.wrote = time.Since(ch.issuedAt)
	cl.mu.Unlock()
}

func (cl *churnClient) forget(ch *churnChange) {
	cl.mu.Lock()
	delete(cl.waiting, ch.key)
	cl.mu.Unlock()
}

func (cl *churnClient) forgetAll() {
	cl.mu.Lock()
	for k, ch := range cl.waiting {
		delete(cl.waiting, k)
		ch.done()
	}
	cl.mu.Unlock()
}

func (cl *churnClient) clusters() int {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return len(cl.state)
}

func (cl *churnClient) waitingCount() int {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return len(cl.waiting)
}

// serveProc is `meshlens serve` running as a child process.
type serveProc struct {
	pid        int
	api        string // http://ADDR/api/v1
	metricsURL string
	xds        string
	token      string
	clients    []*churnClient
	cluster    []int // kube-apiserver's and etcd's pids
}

type buildResult struct {
	path string
	err  error
}

// buildMeshlens builds the meshlens binary into dir.
func buildMeshlens(dir string) buildResult {
	root, err := kubetest.RepoRoot()
	if err != nil {
		return buildResult{err: err}
	}
	out := filepath.Join(dir, "meshlens")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/meshlens")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return buildResult{err: fmt.Errorf("go build ./cmd/meshlens: %v\n%s", err, b)}
	}
	return buildResult{path: out}
}

// freeAddrs returns n loopback addresses that were free a moment ago.
func freeAddrs(b *testing.B, n int) []string {
	var out []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, l.Addr().String())
		defer l.Close()
	}
	return out
}

// startServe runs `meshlens serve --kubeconfig` and waits for /readyz.
func startServe(b *testing.B, bin, kubeconfig string) *serveProc {
	dir := b.TempDir()
	addrs := freeAddrs(b, 4)
	logPath := filepath.Join(dir, "serve.log")
	logf, err := os.Create(logPath)
	if err != nil {
		b.Fatal(err)
	}
	// ClickHouse need not run (addrs[2] is a closed port): serve starts
	// without it and would queue telemetry, of which there is none here
	// (the collector wants one receiver: OTLP/gRPC on addrs[3]).
	dataDir := filepath.Join(dir, "data")
	cmd := exec.Command(bin, "serve", "--kubeconfig", kubeconfig, "--clickhouse", "clickhouse://"+addrs[2]+"/meshlens",
		"--clickhouse-wait", "0s", "--http", addrs[0], "--xds", addrs[1], "--data-dir", dataDir,
		"--otlp-grpc", addrs[3], "--otlp-http", "", "--als", "", "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	b.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill() // our own child, by pid
			<-exited
		}
		logf.Close()
	})
	cp := &serveProc{pid: cmd.Process.Pid, api: "http://" + addrs[0] + "/api/v1", metricsURL: "http://" + addrs[0] + "/metrics", xds: addrs[1]}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		select {
		case <-exited:
			b.Fatalf("meshlens serve exited: %s", tailFile(logPath))
		default:
		}
		if time.Now().After(deadline) {
			b.Fatalf("meshlens serve not ready after 5 minutes: %s", tailFile(logPath))
		}
		resp, err := http.Get("http://" + addrs[0] + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	tok, err := os.ReadFile(auth.TokenPath(dataDir))
	if err != nil {
		b.Fatal(err)
	}
	cp.token = strings.TrimSpace(string(tok))
	return cp
}

func tailFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b[max(0, len(b)-3000):])
}

// procCPU is a process's user and system time (/proc/PID/stat, in
// USER_HZ, which is 100 on Linux).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command, which may hold spaces, in parentheses.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * (time.Second / 100)
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

// clusterPids finds the test cluster's processes: this process's
// children running the binaries in bin.
func clusterPids(bin string) []int {
	var out []int
	self := strconv.Itoa(os.Getpid())
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if filepath.Dir(exe) != filepath.Clean(bin) {
			continue
		}
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:])); len(f) > 1 && f[1] == self {
			out = append(out, pid)
		}
	}
	return out
}

func (cp *serveProc) clusterCPU() time.Duration {
	var d time.Duration
	for _, pid := range cp.cluster {
		d += procCPU(pid)
	}
	return d
}

// pending is how many changes the clients still wait for.
func (cp *serveProc) pending() int {
	n := 0
	for _, cl := range cp.clients {
		n += cl.waitingCount()
	}
	return n
}

// cpu is serve's user and system time.
func (cp *serveProc) cpu() time.Duration { return procCPU(cp.pid) }

// status is a size field of /proc/PID/status (VmRSS, VmHWM) in bytes.
func (cp *serveProc) status(field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cp.pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func (cp *serveProc) rss() int64 { return cp.status("VmRSS") }

// metrics scrapes serve's /metrics: every sample without labels by name,
// and labelled ones by name{labels} as exposed.
func (cp *serveProc) metrics() map[string]float64 {
	out := map[string]float64{}
	resp, err := http.Get(cp.metricsURL)
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "#") {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(l[i+1:], 64); err == nil {
			out[l[:i]] = v
		}
	}
	return out
}

type usagePeak struct {
	rss  int64
	heap float64
}

// sample watches RSS (every 250 ms) and the Go heap in use (every second)
// until the returned function is called; it returns the peaks.
func (cp *serveProc) sample() func() usagePeak {
	stop, done := make(chan struct{}), make(chan usagePeak)
	go func() {
		var p usagePeak
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for i := 0; ; i++ {
			p.rss = max(p.rss, cp.rss())
			if i%4 == 0 {
				p.heap = max(p.heap, cp.metrics()["go_memstats_heap_inuse_bytes"])
			}
			select {
			case <-stop:
				done <- p
				return
			case <-t.C:
			}
		}
	}()
	return func() usagePeak { close(stop); return <-done }
}
