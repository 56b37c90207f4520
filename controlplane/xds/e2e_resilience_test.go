package xds

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshlens/meshlens/internal/meshtest"
)

func vsYAML(httpRoute string) string {
	return `---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo]
  http:
` + httpRoute
}

func TestRetriesMakeFlakyBackendSucceed(t *testing.T) {
	for _, tc := range []struct {
		name     string
		retries  string
		wantFail bool
	}{
		{"three attempts on unavailable succeed", "{attempts: 3, retryOn: unavailable}", false},
		{"retries disabled expose the failures", "{attempts: 0}", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newTestMesh(t)
			b := meshtest.StartBackend(t, "v1", "v1")
			b.FlakyMod.Store(3) // two of every three calls fail with UNAVAILABLE
			m.apply(serviceYAML(echoHost, b) + vsYAML(fmt.Sprintf(`  - route: [{destination: {host: echo}}]
    retries: %s
`, tc.retries)))
			c := m.client(echoTarget, nil, nil)
			got := distribution(t, c, 30, 1)
			if tc.wantFail {
				if got[codes.Unavailable.String()] == 0 {
					t.Fatalf("without retries some RPCs must fail, got %v", got)
				}
				return
			}
			if got["v1"] != 30 {
				t.Fatalf("with retries every RPC must succeed, got %v (backend saw %d calls)", got, b.Calls.Load())
			}
			if b.Calls.Load() < 60 {
				t.Fatalf("backend saw %d calls; the retries did not happen", b.Calls.Load())
			}
		})
	}
}

func TestTimeoutEndsSlowCallWithDeadlineExceeded(t *testing.T) {
	m := newTestMesh(t)
	b := meshtest.StartBackend(t, "v1", "v1")
	b.Delay.Store(int64(10 * time.Minute)) // answers only when the call is cancelled
	m.apply(serviceYAML(echoHost, b) + vsYAML(`  - route: [{destination: {host: echo}}]
    timeout: 300ms
`))
	c := m.client(echoTarget, nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	_, err := call(ctx, c)
	el := time.Since(start)
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("want DeadlineExceeded, got %v", err)
	}
	// The call is ended by the route: the backend never answers and the
	// caller's own deadline has not passed. (No wall-clock upper bound: a
	// loaded machine is slow; the route timeout ending the call is the
	// behaviour.)
	if ctx.Err() != nil {
		t.Fatalf("call ended by the caller's own deadline after %v; the route timeout did not end it", el)
	}
	if el < 250*time.Millisecond {
		t.Errorf("call ended after %v, before the route timeout (300ms)", el)
	}
}

func TestFaultInjectionAbortsAndDelaysByPercentage(t *testing.T) {
	m := newTestMesh(t)
	b := meshtest.StartBackend(t, "v1", "v1")
	m.apply(serviceYAML(echoHost, b) + vsYAML(`  - match: [{headers: {x-fault: {exact: abort}}}]
    fault: {abort: {grpcStatus: UNAVAILABLE, percentage: {value: 50}}}
    route: [{destination: {host: echo}}]
  - match: [{headers: {x-fault: {exact: delay}}}]
    fault: {delay: {fixedDelay: 3s, percentage: {value: 50}}}
    route: [{destination: {host: echo}}]
  - route: [{destination: {host: echo}}]
`))
	c := m.client(echoTarget, nil, nil)

	t.Run("abort 50 percent", func(t *testing.T) {
		got := distribution(t, c, 400, 8, "x-fault", "abort")
		aborted := got[codes.Unavailable.String()]
		if aborted+got["v1"] != 400 {
			t.Fatalf("unexpected outcomes %v", got)
		}
		// sd of the share is 2.5%; 0.38..0.62 is ~5 sd.
		if share := float64(aborted) / 400; share < 0.38 || share > 0.62 {
			t.Fatalf("aborted share %.2f, want ~0.5 (%v)", share, got)
		}
	})
	t.Run("no fault without the header", func(t *testing.T) {
		if got := distribution(t, c, 100, 8); got["v1"] != 100 {
			t.Fatalf("want 100 clean RPCs, got %v", got)
		}
	})
	// A delayed call takes at least the 3 s delay; one not delayed takes
	// far less even on a loaded machine (with a 1 s delay, 100 concurrent
	// calls on a busy CI machine could pass for delayed).
	t.Run("delay 50 percent", func(t *testing.T) {
		const n = 100
		var mu sync.Mutex
		slow := 0
		var wg sync.WaitGroup
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				start := time.Now()
				if _, err := call(ctx, c, "x-fault", "delay"); err != nil {
					t.Error(err)
					return
				}
				if time.Since(start) >= 3*time.Second {
					mu.Lock()
					slow++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if slow < 30 || slow > 70 {
			t.Fatalf("%d of %d RPCs were delayed, want ~50", slow, n)
		}
	})
}

func TestLoadBalancingPolicies(t *testing.T) {
	t.Run("ROUND_ROBIN cycles through every endpoint", func(t *testing.T) {
		m := newTestMesh(t)
		bs := []*meshtest.Backend{meshtest.StartBackend(t, "a", "v1"), meshtest.StartBackend(t, "b", "v1"), meshtest.StartBackend(t, "c", "v1")}
		m.apply(serviceYAML(echoHost, bs...) + subsetsYAML("    loadBalancer: {simple: ROUND_ROBIN}\n"))
		c := m.client(echoTarget, nil, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		// Wait until all three endpoints are connected, then the picks
		// must cycle: no endpoint twice within any window of three.
		meshtest.Eventually(t, 10*time.Second, "all endpoints ready", func() error {
			if got := distribution(t, c, 30, 1); len(got) != 3 {
				return fmt.Errorf("got %v", got)
			}
			return nil
		})
		var seq []string
		for range 30 {
			h, err := call(ctx, c)
			if err != nil {
				t.Fatal(err)
			}
			seq = append(seq, h)
		}
		for i := 2; i < len(seq); i++ {
			if seq[i] == seq[i-1] || seq[i] == seq[i-2] {
				t.Fatalf("not round robin: %v", seq)
			}
		}
	})

	t.Run("RANDOM spreads without a fixed order", func(t *testing.T) {
		m := newTestMesh(t)
		bs := []*meshtest.Backend{meshtest.StartBackend(t, "a", "v1"), meshtest.StartBackend(t, "b", "v1")}
		m.apply(serviceYAML(echoHost, bs...) + subsetsYAML("    loadBalancer: {simple: RANDOM}\n"))
		c := m.client(echoTarget, nil, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		counts := map[string]int{}
		repeats := 0
		prev := ""
		for range 400 {
			h, err := call(ctx, c)
			if err != nil {
				t.Fatal(err)
			}
			counts[h]++
			if h == prev {
				repeats++
			}
			prev = h
		}
		for _, b := range bs {
			if share := float64(counts[b.Name]) / 400; share < 0.3 || share > 0.7 {
				t.Fatalf("endpoint %s got share %.2f: %v", b.Name, share, counts)
			}
		}
		// Round robin over two endpoints never repeats; random repeats ~half the time.
		if repeats < 100 {
			t.Fatalf("only %d repeated picks in 400; this is not random", repeats)
		}
	})

	t.Run("LEAST_REQUEST avoids the busy endpoint", func(t *testing.T) {
		m := newTestMesh(t)
		slow, fast := meshtest.StartBackend(t, "slow", "v1"), meshtest.StartBackend(t, "fast", "v1")
		slow.Delay.Store(int64(150 * time.Millisecond))
		m.apply(serviceYAML(echoHost, slow, fast) + subsetsYAML("    loadBalancer: {simple: LEAST_REQUEST}\n"))
		c := m.client(echoTarget, nil, nil)
		// Least request picks among READY endpoints; wait for both.
		meshtest.Eventually(t, 10*time.Second, "both endpoints ready", func() error {
			if got := distribution(t, c, 20, 4); len(got) != 2 {
				return fmt.Errorf("got %v", got)
			}
			return nil
		})
		got := distribution(t, c, 600, 12)
		// Round robin would split 50/50. Least request (two random choices)
		// only lands on the busy endpoint when both choices are it (~25%).
		if share := float64(got["slow"]) / float64(got["slow"]+got["fast"]); share > 0.40 {
			t.Fatalf("least request should favour the fast endpoint: %v", got)
		}
	})

	for _, key := range []struct {
		name   string
		policy string
		md     func(user int) []string
	}{
		{"consistent hash by header is sticky", "{httpHeaderName: x-user}", func(u int) []string { return []string{"x-user", fmt.Sprint("user-", u)} }},
		{"consistent hash by cookie is sticky", "{httpCookie: {name: user, ttl: 0s}}", func(u int) []string { return []string{"cookie", fmt.Sprint("user=", u)} }},
	} {
		t.Run(key.name, func(t *testing.T) {
			m := newTestMesh(t)
			bs := []*meshtest.Backend{meshtest.StartBackend(t, "a", "v1"), meshtest.StartBackend(t, "b", "v1"), meshtest.StartBackend(t, "c", "v1")}
			m.apply(serviceYAML(echoHost, bs...) + subsetsYAML("    loadBalancer: {consistentHash: "+key.policy+"}\n"))
			c := m.client(echoTarget, nil, nil)
			// Ring hash connects lazily; warm every endpoint up first.
			meshtest.Eventually(t, 10*time.Second, "all endpoints ready", func() error {
				seen := map[string]bool{}
				for u := range 30 {
					for h := range distribution(t, c, 3, 1, key.md(u)...) {
						seen[h] = true
					}
				}
				if len(seen) != 3 {
					return fmt.Errorf("endpoints seen: %v", seen)
				}
				return nil
			})
			used := map[string]bool{}
			for u := range 20 {
				got := distribution(t, c, 20, 2, key.md(u)...)
				if len(got) != 1 {
					t.Fatalf("user %d was not sticky: %v", u, got)
				}
				for h := range got {
					used[h] = true
				}
			}
			if len(used) < 2 {
				t.Fatalf("20 users all hashed to %v; the hash key is not used", used)
			}
		})
	}
}

func TestOutlierDetectionEjectsFailingEndpointAndReturnsIt(t *testing.T) {
	m := newTestMesh(t)
	good, bad := meshtest.StartBackend(t, "good", "v1"), meshtest.StartBackend(t, "bad", "v1")
	m.apply(serviceYAML(echoHost, good, bad) + subsetsYAML(`    loadBalancer: {simple: ROUND_ROBIN}
    outlierDetection: {consecutive5xxErrors: 5, interval: 200ms, baseEjectionTime: 1s, maxEjectionPercent: 50}
`))
	c := m.client(echoTarget, nil, nil)
	// Round robin only picks READY subchannels, and the second connection
	// may still be coming up when the first request goes out.
	meshtest.Eventually(t, 10*time.Second, "both endpoints serve before failures", func() error {
		if got := distribution(t, c, 20, 1); got["good"] == 0 || got["bad"] == 0 {
			return fmt.Errorf("one endpoint gets no traffic: %v", got)
		}
		return nil
	})
	bad.FailCode.Store(int32(codes.Internal))
	meshtest.Eventually(t, 10*time.Second, "the failing endpoint is ejected", func() error {
		if got := distribution(t, c, 20, 1); got["good"] != 20 {
			return fmt.Errorf("traffic still reaches the failing endpoint: %v", got)
		}
		return nil
	})
	bad.FailCode.Store(0)
	meshtest.Eventually(t, 10*time.Second, "the endpoint returns after the ejection time", func() error {
		if got := distribution(t, c, 20, 1); got["bad"] == 0 {
			return fmt.Errorf("recovered endpoint gets no traffic: %v", got)
		}
		return nil
	})
}

func TestConnectionPoolMaxRequestsTripsCircuitBreaker(t *testing.T) {
	m := newTestMesh(t)
	b := meshtest.StartBackend(t, "v1", "v1")
	b.Release = make(chan struct{})
	m.apply(serviceYAML(echoHost, b) + subsetsYAML("    connectionPool: {http: {http2MaxRequests: 2}}\n"))
	c := m.client(echoTarget, nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	errs := make(chan error, 2)
	for range 2 {
		go func() { _, err := call(ctx, c); errs <- err }()
	}
	meshtest.Eventually(t, 10*time.Second, "two requests in flight", func() error {
		if n := b.Inflight.Load(); n != 2 {
			return fmt.Errorf("%d in flight", n)
		}
		return nil
	})
	_, err := call(ctx, c)
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("the third concurrent request must be refused by the circuit breaker, got %v", err)
	}
	close(b.Release)
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("admitted request failed: %v", err)
		}
	}
	if _, err := call(ctx, c); err != nil {
		t.Fatalf("after the burst requests flow again: %v", err)
	}
	if b.MaxFlight.Load() > 2 {
		t.Fatalf("backend saw %d concurrent requests, limit is 2", b.MaxFlight.Load())
	}
}
