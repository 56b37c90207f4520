package xds

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meshlens/meshlens/internal/meshtest"
)

const (
	fleetAddrEnv = "MESHLENS_XDS_FLEET_ADDR"
	fleetSizeEnv = "MESHLENS_XDS_FLEET_N"
	// benchClientsEnv overrides the benchmark's fleet size (default 1000).
	benchClientsEnv = "MESHLENS_XDS_BENCH_CLIENTS"
)

// TestADSClientFleet is the client side of BenchmarkPushWeightChange, run
// as a child process so that the benchmark's own CPU and memory are the
// control plane's. Without the environment it skips.
func TestADSClientFleet(t *testing.T) {
	addr := os.Getenv(fleetAddrEnv)
	if addr == "" {
		t.Skip("helper process for BenchmarkPushWeightChange")
	}
	n, err := strconv.Atoi(os.Getenv(fleetSizeEnv))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const conns = 10
	var ccs []*grpc.ClientConn
	for range conns {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		ccs = append(ccs, cc)
	}
	for i := range n {
		a, err := newADSClient(ctx, ccs[i%conns], fmt.Sprintf("fleet-%04d", i), grpcNodeNames("v1", "v2"))
		if err != nil {
			t.Fatal(err)
		}
		go a.run()
	}
	fmt.Println("FLEET-READY")
	// The parent closes our stdin when the benchmark ends.
	_, _ = io.Copy(io.Discard, os.Stdin)
}

// BenchmarkPushWeightChange pushes a VirtualService weight change to a
// fleet of connected ADS clients (1000 by default) and reports how long it
// takes from Update until every client has ACKed the new routes, and the
// control plane's CPU per push and memory.
//
//	go test ./controlplane/xds -run XXX -bench PushWeightChange -benchtime 20x
func BenchmarkPushWeightChange(b *testing.B) {
	n := 1000
	if v := os.Getenv(benchClientsEnv); v != "" {
		n, _ = strconv.Atoi(v)
	}
	m := newTestMesh(b)
	v1, v2 := meshtest.NewBackend("v1", "v1", 1), meshtest.NewBackend("v2", "v2", 2)
	base := serviceYAML(echoHost, v1, v2) + subsetsYAML("", "v1", "v2")
	m.apply(base + vsWeightsYAML(95, 5)) // differs from every weight pushed below

	cmd := exec.Command(os.Args[0], "-test.run=^TestADSClientFleet$", "-test.count=1")
	cmd.Env = append(os.Environ(), fleetAddrEnv+"="+m.addr, fleetSizeEnv+"="+strconv.Itoa(n))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill() // our own child, by pid
			<-done
		}
	})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
		}
	}()
	// Settled: every client has ACKed every type it subscribes to.
	initial := fmt.Sprintf("%d.%d", m.version, m.srv.push)
	waitFor(b, 60*time.Second, func() bool {
		for _, typ := range []string{resource.ListenerType, resource.RouteType, resource.ClusterType, resource.EndpointType} {
			if m.srv.ackedCount(typ, initial) != n {
				return false
			}
		}
		return true
	})

	// The first push after the fleet connects pays one-time costs (lazy
	// protobuf and gRPC initialisation, growing buffers); report it apart.
	push := func(w int) time.Duration {
		start := time.Now()
		m.version++
		if err := m.srv.Update(parseSnapshot(b, m.version, base+vsWeightsYAML(100-w, w))); err != nil {
			b.Fatal(err)
		}
		version := fmt.Sprintf("%d.%d", m.version, m.srv.push)
		upd := time.Since(start)
		waitFor(b, 30*time.Second, func() bool { return m.srv.ackedCount(resource.RouteType, version) == n })
		if os.Getenv("MESHLENS_XDS_BENCH_VERBOSE") != "" {
			fmt.Println("warm-up Update took", upd)
		}
		return time.Since(start)
	}
	first := push(90)

	runtime.GC()
	var before syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	var converge, perNode []time.Duration
	b.ResetTimer()
	for i := range b.N {
		w := 10 + (i%8)*10
		start := time.Now()
		m.version++
		if err := m.srv.Update(parseSnapshot(b, m.version, base+vsWeightsYAML(100-w, w))); err != nil {
			b.Fatal(err)
		}
		version := fmt.Sprintf("%d.%d", m.version, m.srv.push)
		waitFor(b, 30*time.Second, func() bool { return m.srv.ackedCount(resource.RouteType, version) == n })
		_, _, acked := m.srv.syncState(resource.RouteType, version)
		last := start
		for _, at := range acked {
			perNode = append(perNode, at.Sub(start))
			if at.After(last) {
				last = at
			}
		}
		converge = append(converge, last.Sub(start))
	}
	b.StopTimer()
	var after syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)

	cpu := time.Duration(after.Utime.Nano()+after.Stime.Nano()-before.Utime.Nano()-before.Stime.Nano()) / time.Duration(b.N)
	p := func(d []time.Duration, q float64) time.Duration {
		s := slices.Clone(d)
		slices.Sort(s)
		return s[min(len(s)-1, int(q*float64(len(s))))]
	}
	b.ReportMetric(float64(p(converge, 0.5).Microseconds())/1000, "p50-converge-ms")
	b.ReportMetric(float64(p(converge, 0.99).Microseconds())/1000, "p99-converge-ms")
	b.ReportMetric(float64(cpu.Microseconds())/1000, "cpu-ms/push")
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MB")
	if os.Getenv("MESHLENS_XDS_BENCH_VERBOSE") != "" {
		fmt.Println("convergence per push:", converge)
	}
	fmt.Printf("xds push to %d clients: first push converged in %v\n", n, first)
	fmt.Printf("xds push to %d clients over %d pushes: convergence (Update → all ACKed) p50 %v p99 %v max %v; "+
		"per-client ACK p50 %v p99 %v; control plane CPU %v/push, heap in use %.1f MiB, max RSS %.1f MiB\n",
		n, b.N, p(converge, 0.5), p(converge, 0.99), slices.Max(converge), p(perNode, 0.5), p(perNode, 0.99),
		cpu, float64(ms.HeapInuse)/(1<<20), float64(after.Maxrss)/1024)
}

func waitFor(tb testing.TB, d time.Duration, ok func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			tb.Fatal("timed out")
		}
		time.Sleep(2 * time.Millisecond)
	}
}
