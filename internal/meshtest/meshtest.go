// Package meshtest holds the pieces meshlens' end-to-end tests share: a
// grpc-go TestService backend whose behaviour a test can change, a
// proxyless xDS client for it, a logger that writes to the test log, and a
// retry-until-deadline helper. It is an ordinary package so that tests of
// several packages can import it; only tests do.
package meshtest

import (
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/xds"
)

// Backend is a TestService server that answers UnaryCall with
// SimpleResponse{Hostname: Name}. Its knobs are atomics so a test may turn
// them while calls are in flight; all zero means every call succeeds at once.
type Backend struct {
	testgrpc.UnimplementedTestServiceServer
	Name    string
	Version string
	Port    int

	Calls     atomic.Int64 // UnaryCall and EmptyCall calls received
	FailCode  atomic.Int32 // non-zero: every call fails with this code
	FlakyMod  atomic.Int64 // >1: only every n-th call succeeds, the others are UNAVAILABLE
	Delay     atomic.Int64 // nanoseconds added to each call
	Jitter    atomic.Int64 // up to this many nanoseconds more, uniformly
	ErrPerK   atomic.Int64 // this many calls in 1000 fail UNAVAILABLE at random
	Inflight  atomic.Int64 // UnaryCalls running now
	MaxFlight atomic.Int64 // the most UnaryCalls seen running at once
	// Release, if set before calls arrive, holds every UnaryCall until it is
	// closed (or the call's context ends).
	Release chan struct{}

	lastAuth atomic.Value // string
}

// NewBackend makes a Backend without a server, for a test that serves it
// itself (say on an xds.GRPCServer) or only needs it to name an endpoint.
func NewBackend(name, version string, port int) *Backend {
	return &Backend{Name: name, Version: version, Port: port}
}

// Register serves b on s.
func (b *Backend) Register(s grpc.ServiceRegistrar) {
	testgrpc.RegisterTestServiceServer(s, b)
}

// StartBackend serves a new Backend on a plain grpc.Server (built with
// opts, for interceptors) on 127.0.0.1; the server stops when the test ends.
func StartBackend(t testing.TB, name, version string, opts ...grpc.ServerOption) *Backend {
	t.Helper()
	lis := Listen(t)
	b := NewBackend(name, version, lis.Addr().(*net.TCPAddr).Port)
	s := grpc.NewServer(opts...)
	b.Register(s)
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return b
}

// Listen listens on a free TCP port of 127.0.0.1.
func Listen(t testing.TB) net.Listener {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return lis
}

// LastAuth is how the last UnaryCall's caller connected: "tls:<first URI
// SAN of its certificate>", the credentials' auth type (e.g. "insecure"), or
// "none"; "" before any call.
func (b *Backend) LastAuth() string {
	s, _ := b.lastAuth.Load().(string)
	return s
}

func (b *Backend) recordPeer(ctx context.Context) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		b.lastAuth.Store("none")
		return
	}
	if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
		id := ""
		if cs := ti.State.PeerCertificates; len(cs) > 0 && len(cs[0].URIs) > 0 {
			id = cs[0].URIs[0].String()
		}
		b.lastAuth.Store("tls:" + id)
		return
	}
	b.lastAuth.Store(p.AuthInfo.AuthType())
}

// UnaryCall applies the knobs in order: delay (plus jitter), release,
// fail code, flakiness, random errors.
func (b *Backend) UnaryCall(ctx context.Context, _ *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	n := b.Calls.Add(1)
	b.recordPeer(ctx)
	cur := b.Inflight.Add(1)
	defer b.Inflight.Add(-1)
	for {
		old := b.MaxFlight.Load()
		if cur <= old || b.MaxFlight.CompareAndSwap(old, cur) {
			break
		}
	}
	d := time.Duration(b.Delay.Load())
	if j := b.Jitter.Load(); j > 0 {
		d += time.Duration(rand.Int64N(j))
	}
	if d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if b.Release != nil {
		select {
		case <-b.Release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if c := codes.Code(b.FailCode.Load()); c != codes.OK {
		return nil, status.Errorf(c, "%s fails on purpose", b.Name)
	}
	if mod := b.FlakyMod.Load(); mod > 1 && n%mod != 0 {
		return nil, status.Errorf(codes.Unavailable, "%s is flaky (call %d)", b.Name, n)
	}
	if k := b.ErrPerK.Load(); k > 0 && rand.Int64N(1000) < k {
		return nil, status.Errorf(codes.Unavailable, "%s: background noise", b.Name)
	}
	return &testgrpc.SimpleResponse{Hostname: b.Name}, nil
}

// EmptyCall only counts the call.
func (b *Backend) EmptyCall(context.Context, *testgrpc.Empty) (*testgrpc.Empty, error) {
	b.Calls.Add(1)
	return &testgrpc.Empty{}, nil
}

// XDSClient dials xds:///target as the xDS node the bootstrap JSON
// describes, with its own resolver so that tests do not share the
// process-wide xDS client. creds nil means plaintext, ignoring whatever
// security xDS asks for. The connection closes when the test ends.
func XDSClient(t testing.TB, bootstrap []byte, target string, creds credentials.TransportCredentials) testgrpc.TestServiceClient {
	t.Helper()
	rb, err := xds.NewXDSResolverWithConfigForTesting(bootstrap)
	if err != nil {
		t.Fatal(err)
	}
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	cc, err := grpc.NewClient("xds:///"+target, grpc.WithResolvers(rb), grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return testgrpc.NewTestServiceClient(cc)
}

// HTTP sends body to url with method, as the bearer token's holder when
// token is not empty, and returns the status and the response body.
func HTTP(t testing.TB, method, url, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// Eventually retries check until it returns nil, failing the test with
// what and check's last error once d has passed.
func Eventually(t testing.TB, d time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Logger logs warnings and errors to the test log, so that they show with
// the failing test that caused them.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(Writer(t), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// Writer writes each Write to the test log as one line, for a logger or a
// child process' output.
func Writer(t testing.TB) io.Writer { return testWriter{t} }

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// Background runs run (a component's Run) in a goroutine of its own until
// the test ends, then cancels its context and waits for it to return.
func Background(t testing.TB, run func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}
