package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/meshlens/meshlens/internal/kubetest"
	"github.com/meshlens/meshlens/internal/meshtest"
	"github.com/meshlens/meshlens/rollout"
)

// replicaSet is several `meshlens serve` processes that know each other.
type replicaSet struct {
	procs []*meshlensProcess
	otlp  []string // OTLP/HTTP addresses, by replica
	token string
}

// startReplicas starts n replicas with --peers naming all of them (each one
// skips itself) and a shared tokens file; args go to every one.
func startReplicas(t testing.TB, n int, args ...string) *replicaSet {
	t.Helper()
	return startReplicasWith(t, n, func(int) []string { return args })
}

// startReplicasWith is startReplicas with each replica's own arguments.
func startReplicasWith(t testing.TB, n int, args func(i int) []string) *replicaSet {
	t.Helper()
	rs := &replicaSet{token: "replicas-test-operator-token-0123456789"}
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte(rs.token+" operator\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	https := make([]string, n)
	for i := range https {
		https[i] = freeAddr(t)
		rs.otlp = append(rs.otlp, freeAddr(t))
	}
	for i := range n {
		a := append([]string{"--data-dir", t.TempDir(), "--tokens", tokens, "--otlp-http", rs.otlp[i],
			"--peers", strings.Join(https, ","), "--peer-timeout", "1s", "--pair-wait", "500ms"}, args(i)...)
		rs.procs = append(rs.procs, startMeshlensAt(t, https[i], a...))
	}
	return rs
}

// serverSpans posts n server spans of one service version, one in errEvery
// answering 500 (0: none), over OTLP/HTTP.
func serverSpans(ctx context.Context, otlp, ns, service, version string, n, errEvery int) error {
	return postSpans(ctx, http.DefaultClient, "http://"+otlp, ns, service, version, n, errEvery)
}

// postSpans is serverSpans to the OTLP/HTTP receiver at base (a URL) with
// client (TLS).
func postSpans(ctx context.Context, client *http.Client, base, ns, service, version string, n, errEvery int) error {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	attrs := rs.Resource().Attributes()
	attrs.PutStr("service.name", service)
	attrs.PutStr("service.version", version)
	attrs.PutStr("k8s.namespace.name", ns)
	ss := rs.ScopeSpans().AppendEmpty().Spans()
	now := time.Now()
	for i := range n {
		s := ss.AppendEmpty()
		var tid [16]byte
		var sid [8]byte
		copy(tid[:], fmt.Sprintf("%016d", now.UnixNano()+int64(i)))
		copy(sid[:], fmt.Sprintf("%08d", i))
		s.SetTraceID(pcommon.TraceID(tid))
		s.SetSpanID(pcommon.SpanID(sid))
		s.SetKind(ptrace.SpanKindServer)
		s.SetName("GET /reviews")
		s.SetStartTimestamp(pcommon.NewTimestampFromTime(now.Add(-10 * time.Millisecond)))
		s.SetEndTimestamp(pcommon.NewTimestampFromTime(now))
		code := 200
		if errEvery > 0 && i%errEvery == 0 {
			code = 500
		}
		s.Attributes().PutInt("http.response.status_code", int64(code))
		s.Attributes().PutStr("http.request.method", "GET")
	}
	body, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/traces", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("OTLP: %s", resp.Status)
	}
	return nil
}

// load sends spans of both versions to every live replica in turn, as a
// load balancer would, until stopped; one candidate span in errEvery
// answers 500 (0: none), changeable while it runs.
func (rs *replicaSet) load(ns string, errEvery *atomic.Int32) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			for i, p := range rs.procs {
				if !p.Running() {
					continue
				}
				_ = serverSpans(ctx, rs.otlp[i], ns, "reviews", "v1", 2, 0)
				_ = serverSpans(ctx, rs.otlp[i], ns, "reviews", "v2", 2, int(errEvery.Load()))
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	})
	return func() { cancel(); wg.Wait() }
}

type replicasView struct {
	Instance string `json:"instance"`
	Leader   string `json:"leader"`
	IsLeader bool   `json:"isLeader"`
}

func (rs *replicaSet) view(t testing.TB, i int) (replicasView, error) {
	code, body := meshtest.HTTP(t, "GET", "http://"+rs.procs[i].http+"/api/v1/replicas", rs.token, "")
	var v replicasView
	if code != 200 {
		return v, fmt.Errorf("%d %s", code, body)
	}
	return v, json.Unmarshal([]byte(body), &v)
}

// leader waits until exactly one running replica leads and the others
// name it; it returns its index.
func (rs *replicaSet) leader(t testing.TB, within time.Duration) int {
	t.Helper()
	idx := -1
	meshtest.Eventually(t, within, "exactly one replica leads and the others name it", func() error {
		idx = -1
		for i, p := range rs.procs {
			if !p.Running() {
				continue
			}
			v, err := rs.view(t, i)
			if err != nil {
				return err
			}
			if v.IsLeader {
				if idx >= 0 {
					return fmt.Errorf("replicas %d and %d both lead", idx, i)
				}
				idx = i
			}
		}
		if idx < 0 {
			return fmt.Errorf("no replica leads")
		}
		for i, p := range rs.procs {
			if i == idx || !p.Running() {
				continue
			}
			if v, _ := rs.view(t, i); v.Leader != rs.procs[idx].http {
				return fmt.Errorf("replica %d names leader %q, want %s", i, v.Leader, rs.procs[idx].http)
			}
		}
		return nil
	})
	return idx
}

// The leader of three replicas is killed mid-canary: another one takes the
// Lease within its duration, restores the rollout from its status at the
// same step with its verdict history, writes nothing again (the
// VirtualService keeps its generation until the next step), and takes
// the canary to the end; the replicas' merged graph meanwhile names the dead
// one as missing.
func TestReplicasLeaderKilledMidCanaryAnotherContinuesAtTheSameStep(t *testing.T) {
	c := kubetest.Shared(t)
	ctx := context.Background()
	ns := c.Namespace(t, "replicas")
	rolloutGVR := schema.GroupVersionResource{Group: "meshlens.io", Version: "v1alpha1", Resource: "rollouts"}
	vsGVR := schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "virtualservices"}
	t.Cleanup(func() {
		_ = c.Dynamic.Resource(rolloutGVR).Namespace(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
	})
	reviewsRoutes(t, c, ns)
	const lease = 4 * time.Second
	rs := startReplicas(t, 3, "--kubeconfig", c.Kubeconfig, "--clickhouse", "clickhouse://127.0.0.1:1/x", "--clickhouse-wait", "0s",
		"--traffic-provider", "istio", "--leader-elect", "--leader-elect-lease", ns+"/meshlens",
		"--leader-elect-lease-duration", lease.String(), "--leader-elect-renew-deadline", "3s", "--leader-elect-retry-period", "500ms")
	first := rs.leader(t, 60*time.Second)
	stop := rs.load(ns, new(atomic.Int32))
	defer stop()

	// Each step needs more candidate requests than one replica gets in it:
	// it passes only on the replicas' merged numbers.
	if err := c.Apply(ctx, ns, []byte(`apiVersion: meshlens.io/v1alpha1
kind: Rollout
metadata: {name: reviews}
spec:
  service: reviews
  stable: v1
  candidate: v2
  strategy: {canary: {steps: [20, 50, 100], minDuration: 8s, minRequests: 150}}
  analysis: {interval: 1s, window: 8s, minSamples: 20}
`)); err != nil {
		t.Fatal(err)
	}
	engineOf := func() (rollout.Status, string, error) {
		u, err := c.Dynamic.Resource(rolloutGVR).Namespace(ns).Get(ctx, "reviews", metav1.GetOptions{})
		if err != nil {
			return rollout.Status{}, "", err
		}
		m, ok, _ := unstructured.NestedMap(u.Object, "status", "engine")
		if !ok {
			return rollout.Status{}, "", fmt.Errorf("no status.engine yet")
		}
		b, _ := json.Marshal(m)
		var st rollout.Status
		err = json.Unmarshal(b, &st)
		vs, verr := c.Dynamic.Resource(vsGVR).Namespace(ns).Get(ctx, "reviews", metav1.GetOptions{})
		if verr != nil {
			return st, "", verr
		}
		// The generation moves with the spec only (status writes, which
		// every replica's config source makes, do not move it).
		return st, fmt.Sprint(vs.GetGeneration()), err
	}
	var before rollout.Status
	var vsVersion string
	meshtest.Eventually(t, 90*time.Second, "the canary reaches step 1 (50%) on the first leader", func() error {
		st, rv, err := engineOf()
		if err != nil {
			return err
		}
		if st.State != rollout.Progressing || st.Step != 1 || st.Applied == nil || st.Applied.Candidate != 50 {
			return fmt.Errorf("state %s step %d applied %+v: %s", st.State, st.Step, st.Applied, st.Message)
		}
		before, vsVersion = st, rv
		return nil
	})
	verdictsBefore := countHistory(before, "verdict")
	if verdictsBefore == 0 || before.LastVerdict == nil || before.LastVerdict.Candidate.Requests == 0 {
		t.Fatalf("no verdicts before the kill: %+v", before)
	}
	killedAt := time.Now()
	rs.procs[first].Kill()

	next := rs.leader(t, 3*lease+10*time.Second)
	took := time.Since(killedAt)
	t.Logf("replica %d took over from %d after %v (lease %v)", next, first, took.Round(100*time.Millisecond), lease)
	if took > 3*lease {
		t.Errorf("takeover took %v, more than the lease (%v) allows", took, lease)
	}

	// The new leader holds the same rollout at the same step with the
	// history it restored; it wrote no routes for it.
	code, body := meshtest.HTTP(t, "GET", "http://"+rs.procs[next].http+"/api/v1/rollouts/"+ns+"/reviews", rs.token, "")
	if code != 200 {
		t.Fatalf("GET rollout on the new leader: %d %s", code, body)
	}
	var got rollout.Status
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if got.Step < 1 || !got.StartedAt.Equal(before.StartedAt) || countHistory(got, "verdict") < verdictsBefore {
		t.Fatalf("new leader: step %d started %v, %d verdicts; before the kill: step 1 started %v, %d verdicts",
			got.Step, got.StartedAt, countHistory(got, "verdict"), before.StartedAt, verdictsBefore)
	}
	if got.Step == 1 {
		if !got.StepStartedAt.Equal(before.StepStartedAt) {
			t.Errorf("step 1 started over on the new leader: %v, was %v", got.StepStartedAt, before.StepStartedAt)
		}
		if _, rv, err := engineOf(); err == nil && rv != vsVersion {
			st, _, _ := engineOf()
			if st.Step == 1 {
				t.Errorf("the new leader wrote the VirtualService again at the same step (generation %s, was %s)", rv, vsVersion)
			}
		}
	}

	// The survivors' merged graph names the dead replica.
	meshtest.Eventually(t, 30*time.Second, "the merged graph is partial, naming the killed replica", func() error {
		code, body := meshtest.HTTP(t, "GET", "http://"+rs.procs[next].http+"/api/v1/graph?window=1m", rs.token, "")
		if code != 200 || !strings.Contains(body, `"partial":true`) || !strings.Contains(body, rs.procs[first].http) {
			return fmt.Errorf("%d %.300s", code, body)
		}
		return nil
	})
	// A follower shows the rollout as the leader wrote it, and refuses to
	// act, naming the leader.
	for i, p := range rs.procs {
		if i == next || !p.Running() {
			continue
		}
		meshtest.Eventually(t, 20*time.Second, fmt.Sprintf("follower %d shows the rollout at its step with its history", i), func() error {
			code, body := meshtest.HTTP(t, "GET", "http://"+p.http+"/api/v1/rollouts/"+ns+"/reviews", rs.token, "")
			var st rollout.Status
			if code != 200 || json.Unmarshal([]byte(body), &st) != nil {
				return fmt.Errorf("%d %.200s", code, body)
			}
			if st.Step < 1 || countHistory(st, "verdict") < verdictsBefore || !st.StartedAt.Equal(before.StartedAt) {
				return fmt.Errorf("step %d, %d verdicts, started %v", st.Step, countHistory(st, "verdict"), st.StartedAt)
			}
			return nil
		})
	}
	for i, p := range rs.procs {
		if i == next || !p.Running() {
			continue
		}
		req, _ := http.NewRequest("POST", "http://"+p.http+"/api/v1/rollouts/"+ns+"/reviews/pause", nil)
		req.Header.Set("Authorization", "Bearer "+rs.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get(rollout.LeaderHeader) != rs.procs[next].http {
			t.Errorf("pause on follower %d: %s, leader header %q; want 503 naming %s", i, resp.Status, resp.Header.Get(rollout.LeaderHeader), rs.procs[next].http)
		}
	}

	meshtest.Eventually(t, 90*time.Second, "the new leader takes the canary to the end", func() error {
		st, _, err := engineOf()
		if err != nil {
			return err
		}
		if st.State != rollout.Succeeded {
			return fmt.Errorf("state %s step %d: %s", st.State, st.Step, st.Message)
		}
		return nil
	})
	final, _, _ := engineOf()
	// Every weight was pushed once: no step's push repeated across leaders.
	pushes := map[string]int{}
	for _, h := range final.History {
		if h.Type == "push" && h.Error == "" && h.Weights != nil {
			pushes[fmt.Sprintf("%d/%d", h.Weights.Stable, h.Weights.Candidate)]++
		}
	}
	for w, n := range pushes {
		if n != 1 {
			t.Errorf("weights %s pushed %d times: %v", w, n, pushes)
		}
	}
	if len(pushes) < 3 {
		t.Errorf("pushes %v: want 80/20, 50/50 and the promotion", pushes)
	}
	// The verdicts judged more candidate requests than any one replica got
	// (at most 2 every 200 ms, 80 in the 8 s window): the judge read the
	// replicas' merged numbers.
	var most uint64
	for _, h := range final.History {
		if h.Type == "verdict" && h.Verdict != nil && h.Verdict.Candidate.Requests > most {
			most = h.Verdict.Candidate.Requests
		}
	}
	if most <= 80 {
		t.Errorf("largest verdict sample %d candidate requests, want the merged > 80", most)
	}
}

// reviewsRoutes makes the Service reviews in ns with its subsets v1 and v2
// and a VirtualService sending everything to v1, for the istio provider.
func reviewsRoutes(t testing.TB, c *kubetest.Cluster, ns string) {
	t.Helper()
	ctx := context.Background()
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "reviews", Namespace: ns},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "reviews"}, Ports: []corev1.ServicePort{{Name: "http", Port: 9080, TargetPort: intstr.FromInt32(9080)}}}}
	if _, err := c.Client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Apply(ctx, ns, []byte(reviewsIstioRoutes)); err != nil {
		t.Fatal(err)
	}
}

func countHistory(st rollout.Status, typ string) int {
	n := 0
	for _, h := range st.History {
		if h.Type == typ {
			n++
		}
	}
	return n
}
