package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/meshlens/meshlens/internal/meshtest"
)

// Faults between replicas (issue 12): a peer restarting during a merged
// query, a network partition between replicas, and a peer whose clock is
// off. Each runs real `meshlens serve` processes on loopback and reads the
// merged graph as a user does.

// faultReplicas is a set of replicas started by the test itself, each with
// its own --peers list (some peers reached through the test's proxies), so
// one can be restarted on the same address and data dir.
type faultReplicas struct {
	token  string
	tokens string
	http   []string
	otlp   []string
	data   []string
	peers  [][]string
	procs  []*meshlensProcess
}

func startFaultReplicas(t *testing.T, http []string, peers func(i int) []string) *faultReplicas {
	t.Helper()
	fr := &faultReplicas{token: "replica-faults-operator-token-0123456789", http: http}
	fr.tokens = filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(fr.tokens, []byte(fr.token+" operator\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for i := range http {
		fr.otlp = append(fr.otlp, freeAddr(t))
		fr.data = append(fr.data, t.TempDir())
		fr.peers = append(fr.peers, peers(i))
		fr.procs = append(fr.procs, nil)
		fr.start(t, i)
	}
	return fr
}

// start (re)starts replica i on its address and data dir.
func (fr *faultReplicas) start(t *testing.T, i int) {
	t.Helper()
	// No ClickHouse (none answers on loopback port 1): the live graphs are
	// what is merged, and a ClickHouse of the machine's own is left alone.
	p := startMeshlensAt(t, fr.http[i], "--clickhouse", "clickhouse://127.0.0.1:1/meshlens", "--clickhouse-wait", "0s",
		"--data-dir", fr.data[i], "--tokens", fr.tokens, "--otlp-http", fr.otlp[i],
		"--peers", strings.Join(fr.peers[i], ","), "--peer-timeout", "1s", "--pair-wait", "300ms")
	// A test that fails while a replica is stopped must not leave it so:
	// the Stop of the cleanup would wait for nothing.
	t.Cleanup(func() { _ = p.Process().Signal(syscall.SIGCONT) })
	fr.procs[i] = p
}

// send posts n server spans of shop/reviews to replica i.
func (fr *faultReplicas) send(t *testing.T, i, n int) {
	t.Helper()
	if err := serverSpans(context.Background(), fr.otlp[i], "shop", "reviews", "v1", n, 0); err != nil {
		t.Fatalf("spans to replica %d: %v", i, err)
	}
}

// graphAnswer is GET /api/v1/graph as the fault tests read it.
type graphAnswer struct {
	status  int
	took    time.Duration
	reviews uint64 // requests into shop/reviews
	partial bool
	missing map[string]string // replica address -> error
	err     error
}

// answerBound is how long a merged read may take while a peer is stopped,
// dead or cut off: --peer-timeout (1s) plus a margin for a loaded machine.
// A read that waited for such a peer would wait until graph's own timeout
// (a minute) and fail there; the bound tells such a hang from a slow
// machine, it does not measure speed (the benchmarks do).
const answerBound = 15 * time.Second

// graph reads the merged service graph on replica i, with its own timeout
// well above answerBound, so that a hang shows as one.
func (fr *faultReplicas) graph(i int) graphAnswer {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	var g mergedGraph
	var a graphAnswer
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+fr.http[i]+"/api/v1/graph?view=service&window=5m", nil)
	if err != nil {
		return graphAnswer{err: err}
	}
	req.Header.Set("Authorization", "Bearer "+fr.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return graphAnswer{err: err, took: time.Since(start)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	a.took, a.status = time.Since(start), resp.StatusCode
	if err != nil {
		a.err = err
		return a
	}
	if resp.StatusCode != http.StatusOK {
		a.err = fmt.Errorf("%s: %s", resp.Status, body)
		return a
	}
	if err := json.Unmarshal(body, &g); err != nil {
		a.err = err
		return a
	}
	for _, e := range g.Edges {
		if e.Target == "shop/reviews" {
			a.reviews += e.Requests
		}
	}
	a.partial = g.Partial
	a.missing = map[string]string{}
	for _, m := range g.Missing {
		a.missing[m.Replica] = m.Error
	}
	return a
}

// waitSilent waits until replica i, sent SIGSTOP, no longer answers. A
// kill(2) returns once the stop is set in motion; on a sandboxed kernel
// (gVisor, as CI runs) a thread can still be answering a few milliseconds
// later, and a merged query sent then would be whole.
func (fr *faultReplicas) waitSilent(t *testing.T, i int) {
	t.Helper()
	client := &http.Client{Timeout: 300 * time.Millisecond}
	meshtest.Eventually(t, 10*time.Second, fmt.Sprintf("replica %d stops answering after SIGSTOP", i), func() error {
		resp, err := client.Get("http://" + fr.http[i] + "/healthz")
		if err != nil {
			return nil // no answer within 300ms: stopped
		}
		resp.Body.Close()
		return fmt.Errorf("still answers: %s", resp.Status)
	})
}

// wantGraph waits until replica i's merged graph counts want requests of
// reviews and is missing exactly the replicas named (whole when none).
func (fr *faultReplicas) wantGraph(t *testing.T, i int, want uint64, missing ...string) graphAnswer {
	t.Helper()
	var last graphAnswer
	meshtest.Eventually(t, 20*time.Second, fmt.Sprintf("replica %d counts %d requests, missing %v", i, want, missing), func() error {
		last = fr.graph(i)
		if last.err != nil {
			return last.err
		}
		if last.reviews != want || len(last.missing) != len(missing) || last.partial != (len(missing) > 0) {
			return fmt.Errorf("%d requests, partial %v, missing %v", last.reviews, last.partial, last.missing)
		}
		for _, m := range missing {
			if _, ok := last.missing[m]; !ok {
				return fmt.Errorf("missing %v, want %v", last.missing, missing)
			}
		}
		return nil
	})
	return last
}

// A peer restarting during merged queries: replica 2 is stopped (SIGSTOP)
// while a merged query on replica 0 waits for it, then killed (SIGKILL)
// under that query. The query answers 200, partial, naming replica 2, well
// within --peer-timeout plus a margin, and so does every query of a reader
// that keeps asking while replica 2 is down and starting again; none fails
// or hangs. Back on the same address and data dir (a new instance with an
// empty live graph), the graph is whole again and counts what it has been
// sent since.
func TestReplicaRestartingDuringMergedQueriesGivesPartialAnswersThenWholeAgain(t *testing.T) {
	addrs := []string{freeAddr(t), freeAddr(t), freeAddr(t)}
	fr := startFaultReplicas(t, addrs, func(int) []string { return addrs })
	for i := range 3 {
		fr.send(t, i, 10)
	}
	fr.wantGraph(t, 0, 30)

	// Stopped: a query on replica 0 waits for it...
	if err := fr.procs[2].Process().Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	fr.waitSilent(t, 2)
	inflight := make(chan graphAnswer, 1)
	go func() { inflight <- fr.graph(0) }()
	time.Sleep(400 * time.Millisecond)
	// ...and it dies under that query.
	fr.procs[2].Kill()
	a := <-inflight
	if a.err != nil || !a.partial || a.reviews != 20 || a.missing[addrs[2]] == "" || len(a.missing) != 1 {
		t.Fatalf("query under the kill: %+v; want 200, partial, 20 requests, missing %s", a, addrs[2])
	}
	if a.took > answerBound {
		t.Errorf("query under the kill took %v; --peer-timeout is 1s", a.took)
	}
	t.Logf("query under the kill: %v, missing %v", a.took.Round(time.Millisecond), a.missing)

	// A reader that keeps asking while it is down and restarting.
	var (
		mu      sync.Mutex
		answers []graphAnswer
		stop    atomic.Bool
		wg      sync.WaitGroup
	)
	wg.Go(func() {
		for !stop.Load() {
			a := fr.graph(0)
			mu.Lock()
			answers = append(answers, a)
			mu.Unlock()
			time.Sleep(50 * time.Millisecond)
		}
	})
	time.Sleep(time.Second)
	fr.start(t, 2)
	fr.send(t, 2, 5)
	fr.wantGraph(t, 0, 25)
	stop.Store(true)
	wg.Wait()
	partial, whole := 0, 0
	for _, a := range answers {
		switch {
		case a.err != nil:
			t.Errorf("while replica 2 restarted: %v (after %v)", a.err, a.took)
		case a.took > answerBound:
			t.Errorf("while replica 2 restarted: an answer took %v", a.took)
		case a.partial && len(a.missing) == 1 && a.missing[addrs[2]] != "":
			partial++
		case !a.partial && len(a.missing) == 0:
			whole++
		default:
			t.Errorf("while replica 2 restarted: partial %v, missing %v", a.partial, a.missing)
		}
	}
	if partial == 0 {
		t.Errorf("no partial answer among %d while replica 2 was down", len(answers))
	}
	t.Logf("while replica 2 was down and restarting: %d answers, %d partial naming it, %d whole, none failed", len(answers), partial, whole)
	fr.wantGraph(t, 1, 25)
	fr.wantGraph(t, 2, 25)
}

// A network partition between replicas: replicas 0 and 1 reach replica 2
// only through a proxy, and it reaches them only through theirs; the test
// cuts all three (packets dropped, connections hang). Telemetry still
// reaches every replica (the load balancer is on every side). During the
// partition each side answers within --peer-timeout plus a margin, partial,
// naming the replicas on the other side ("no answer within 1s"), with the
// traffic of its own side. Healed, every replica answers the whole graph
// again, including what replica 2 counted while it was cut off.
func TestNetworkPartitionBetweenReplicasGivesPartialAnswersOnBothSidesThenWhole(t *testing.T) {
	addrs := []string{freeAddr(t), freeAddr(t), freeAddr(t)}
	via := make([]*meshtest.FaultProxy, 3) // via[i]: the way to replica i from the other side
	for i := range via {
		via[i] = meshtest.StartFaultProxy(t, addrs[i])
	}
	fr := startFaultReplicas(t, addrs, func(i int) []string {
		if i == 2 {
			return []string{via[0].Addr(), via[1].Addr(), addrs[2]}
		}
		return []string{addrs[0], addrs[1], via[2].Addr()}
	})
	for i := range 3 {
		fr.send(t, i, 10)
	}
	for i := range 3 {
		fr.wantGraph(t, i, 30)
	}

	for _, p := range via {
		p.Cut()
	}
	for i := range 3 {
		fr.send(t, i, 10)
	}
	a := fr.wantGraph(t, 0, 40, via[2].Addr())
	if e := a.missing[via[2].Addr()]; e != "no answer within 1s" {
		t.Errorf("replica 0 names replica 2 missing with %q", e)
	}
	b := fr.wantGraph(t, 2, 20, via[0].Addr(), via[1].Addr())
	fr.wantGraph(t, 1, 40, via[2].Addr())
	for _, x := range []graphAnswer{a, b} {
		if x.took > answerBound {
			t.Errorf("a partitioned read took %v; --peer-timeout is 1s", x.took)
		}
	}
	t.Logf("partitioned: replica 0 answered in %v (%d requests), replica 2 in %v (%d requests)",
		a.took.Round(time.Millisecond), a.reviews, b.took.Round(time.Millisecond), b.reviews)
	if n := fr.procs[0].metric(t, `meshlens_replica_peer_reads_total{result="timeout"}`); n < 1 {
		t.Errorf(`meshlens_replica_peer_reads_total{result="timeout"} = %v on replica 0`, n)
	}

	for _, p := range via {
		p.Heal()
	}
	for i := range 3 {
		fr.wantGraph(t, i, 60)
	}
}

// skewProxy is an HTTP proxy to a replica that shifts the clock the
// replica reports (Meshlens-Time) by offset: a replica's own clock cannot
// be set here (Go reads the kernel's clock through the vDSO, so
// LD_PRELOAD fakers miss it, and time namespaces do not shift the wall
// clock), so the test skews what the asker sees, which is all it judges by.
func startSkewProxy(t *testing.T, target string, offset *atomic.Int64) string {
	t.Helper()
	u, err := url.Parse("http://" + target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ModifyResponse = func(resp *http.Response) error {
		if ns, err := strconv.ParseInt(resp.Header.Get("Meshlens-Time"), 10, 64); err == nil {
			resp.Header.Set("Meshlens-Time", strconv.FormatInt(ns+offset.Load(), 10))
		}
		return nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: rp, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// A replica whose clock is 45 s ahead of the others' (beyond the default
// 5 s --peer-max-clock-skew) is left out of the merged graph of the
// replica that reads it: partial, named with its offset, its reads counted
// as clock_skew, its offset on /metrics and GET /api/v1/replicas, a
// warning logged. Once its clock agrees again (1 s off) it is merged again
// and the log says so.
func TestAReplicaWhoseClockIsOffIsLeftOutOfMergedReadsNamingTheOffset(t *testing.T) {
	addrs := []string{freeAddr(t), freeAddr(t)}
	var offset atomic.Int64
	offset.Store(int64(45 * time.Second))
	skewed := startSkewProxy(t, addrs[1], &offset)
	fr := startFaultReplicas(t, addrs, func(i int) []string {
		if i == 0 {
			return []string{addrs[0], skewed}
		}
		return addrs
	})
	fr.send(t, 0, 10)
	fr.send(t, 1, 20)
	a := fr.wantGraph(t, 0, 10, skewed)
	const want = "clock 45s ahead of this replica's, more than the 5s allowed (--peer-max-clock-skew)"
	if !strings.HasPrefix(a.missing[skewed], want) {
		t.Errorf("missing %s: %q, want it to start %q", skewed, a.missing[skewed], want)
	}
	// Replica 1 reads replica 0 directly: their clocks agree, it is whole.
	fr.wantGraph(t, 1, 30)
	if n := fr.procs[0].metric(t, `meshlens_replica_peer_reads_total{result="clock_skew"}`); n < 1 {
		t.Errorf(`meshlens_replica_peer_reads_total{result="clock_skew"} = %v`, n)
	}
	if v := fr.procs[0].metric(t, `meshlens_replica_peer_clock_offset_seconds{peer="`+skewed+`"}`); v < 44 || v > 46 {
		t.Errorf("meshlens_replica_peer_clock_offset_seconds of the skewed peer = %v, want about 45", v)
	}
	var view struct {
		Peers []struct {
			Address       string   `json:"address"`
			OK            bool     `json:"ok"`
			Error         string   `json:"error"`
			ClockOffsetMs *float64 `json:"clockOffsetMs"`
		} `json:"peers"`
	}
	code, body := meshtest.HTTP(t, "GET", "http://"+addrs[0]+"/api/v1/replicas", fr.token, "")
	if err := json.Unmarshal([]byte(body), &view); code != 200 || err != nil || len(view.Peers) != 1 {
		t.Fatalf("GET /api/v1/replicas: %d %s (%v)", code, body, err)
	}
	if p := view.Peers[0]; p.Address != skewed || p.OK || p.ClockOffsetMs == nil || *p.ClockOffsetMs < 44000 || *p.ClockOffsetMs > 46000 {
		t.Errorf("GET /api/v1/replicas peer: %s", body)
	}
	// The log is read from the process's stderr as it comes: wait for it.
	logged := func(line string) {
		t.Helper()
		meshtest.Eventually(t, 30*time.Second, "replica 0 logs "+line, func() error {
			if !strings.Contains(fr.procs[0].Log(), line) {
				return fmt.Errorf("not logged yet")
			}
			return nil
		})
	}
	logged("a peer's clock is too far from this replica's")

	offset.Store(int64(time.Second))
	fr.wantGraph(t, 0, 30)
	logged("a peer's clock agrees with this replica's again")
}
