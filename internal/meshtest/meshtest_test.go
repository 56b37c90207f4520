package meshtest

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
)

func dial(t *testing.T, b *Backend) testgrpc.TestServiceClient {
	t.Helper()
	cc, err := grpc.NewClient(fmt.Sprintf("127.0.0.1:%d", b.Port), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return testgrpc.NewTestServiceClient(cc)
}

// TestBackendKnobsShapeItsAnswers checks each knob over a real connection:
// the outcomes of six calls in a row, by hostname or status code.
func TestBackendKnobsShapeItsAnswers(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(b *Backend)
		want []string
	}{
		{"no knobs answers with the name", func(*Backend) {}, []string{"a", "a", "a", "a", "a", "a"}},
		{"fail code fails every call", func(b *Backend) { b.FailCode.Store(int32(codes.Internal)) },
			[]string{"Internal", "Internal", "Internal", "Internal", "Internal", "Internal"}},
		{"flaky mod 3 passes every third call", func(b *Backend) { b.FlakyMod.Store(3) },
			[]string{"Unavailable", "Unavailable", "a", "Unavailable", "Unavailable", "a"}},
		{"1000 errors per thousand fail every call", func(b *Backend) { b.ErrPerK.Store(1000) },
			[]string{"Unavailable", "Unavailable", "Unavailable", "Unavailable", "Unavailable", "Unavailable"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := StartBackend(t, "a", "v1")
			tc.set(b)
			c := dial(t, b)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var got []string
			for range tc.want {
				r, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{})
				if err != nil {
					got = append(got, status.Code(err).String())
					continue
				}
				got = append(got, r.GetHostname())
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			if n := b.Calls.Load(); n != int64(len(tc.want)) {
				t.Fatalf("backend counted %d calls, made %d", n, len(tc.want))
			}
			// A server without transport credentials knows no auth info.
			if a := b.LastAuth(); a != "none" {
				t.Fatalf("LastAuth = %q, want none", a)
			}
		})
	}
}

// TestBackendReleaseHoldsCallsInFlight serves a Backend built with
// NewBackend on a server of the test's own: calls wait for Release, and the
// in-flight counters see them together.
func TestBackendReleaseHoldsCallsInFlight(t *testing.T) {
	lis := Listen(t)
	b := NewBackend("a", "v1", lis.Addr().(*net.TCPAddr).Port)
	b.Release = make(chan struct{})
	s := grpc.NewServer()
	b.Register(s)
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	c := dial(t, b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	errs := make(chan error, 3)
	for range 3 {
		go func() { _, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{}); errs <- err }()
	}
	Eventually(t, 10*time.Second, "three calls in flight", func() error {
		if n := b.Inflight.Load(); n != 3 {
			return fmt.Errorf("%d in flight", n)
		}
		return nil
	})
	close(b.Release)
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatalf("released call failed: %v", err)
		}
	}
	if in, most := b.Inflight.Load(), b.MaxFlight.Load(); in != 0 || most != 3 {
		t.Fatalf("after the release %d in flight (want 0), at most %d (want 3)", in, most)
	}
}
