package demo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/xds"
)

// instance is one running workload: its gRPC server and, for each service it
// calls, an xDS-routed client.
type instance struct {
	testpb.UnimplementedTestServiceServer
	def    Instance
	id     peerIdentity
	faults *Faults
	logger *slog.Logger

	lis     net.Listener
	server  grpcServer
	clients []downstream

	// serving is closed once the server accepts calls: at once for a plain
	// server, when its inbound listener arrives for an xDS one.
	serving     chan struct{}
	servingOnce sync.Once
}

// grpcServer is what *grpc.Server and the xDS-managed *xds.GRPCServer share.
type grpcServer interface {
	grpc.ServiceRegistrar
	Serve(net.Listener) error
	GracefulStop()
	Stop()
}

type downstream struct {
	service string
	conn    *grpc.ClientConn
	stub    testpb.TestServiceClient
}

// dialXDS opens a client to a mesh service through the xds resolver, with
// the workload's own bootstrap and client spans from tp.
func dialXDS(service string, cfg *Config, r resolver.Builder, tp trace.TracerProvider) (*grpc.ClientConn, error) {
	target := Target(service, cfg.Namespace, cfg.ServicePort)
	// xDS credentials follow the control plane: mTLS where it pushes
	// security config, plaintext otherwise.
	creds, err := xdscreds.NewClientCredentials(xdscreds.ClientOptions{FallbackCreds: insecure.NewCredentials()})
	if err != nil {
		return nil, fmt.Errorf("xDS credentials: %w", err)
	}
	conn, err := grpc.NewClient(target, grpc.WithResolvers(r),
		grpc.WithTransportCredentials(creds),
		grpc.WithStatsHandler(statsHandler(tp, &callee{service: service, host: Host(service, cfg.Namespace), port: cfg.ServicePort})),
	)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", target, err)
	}
	return conn, nil
}

// startInstance listens on addr and serves the TestService; its outbound
// clients resolve through the xDS server at cfg.XDS.
func startInstance(def Instance, addr string, cfg *Config, tp trace.TracerProvider, faults *Faults, logger *slog.Logger) (*instance, error) {
	in := &instance{
		def:     def,
		id:      peerIdentity{Service: def.Service, Version: def.Version, Namespace: cfg.Namespace, Workload: def.Workload()},
		faults:  faults,
		logger:  logger.With("workload", def.Workload()),
		serving: make(chan struct{}),
	}
	if len(def.Calls) > 0 {
		r, err := xdsResolver(cfg.XDS, in.id)
		if err != nil {
			return nil, err
		}
		for _, svc := range def.Calls {
			conn, err := dialXDS(svc, cfg, r, tp)
			if err != nil {
				in.closeClients()
				return nil, fmt.Errorf("%s: %w", def.Workload(), err)
			}
			in.clients = append(in.clients, downstream{service: svc, conn: conn, stub: testpb.NewTestServiceClient(conn)})
		}
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		in.closeClients()
		return nil, fmt.Errorf("%s: listen on %s: %w", def.Workload(), addr, err)
	}
	in.lis = lis
	srv, err := in.newServer(cfg, tp)
	if err != nil {
		lis.Close()
		in.closeClients()
		return nil, err
	}
	in.server = srv
	testpb.RegisterTestServiceServer(in.server, in)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(in.server, hs)
	go func() {
		if err := in.server.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			in.logger.Error("gRPC server stopped", "err", err)
		}
	}()
	return in, nil
}

// newServer builds the instance's gRPC server: a plain one, or with
// cfg.XDSServers one whose inbound side (mTLS, RBAC from
// PeerAuthentication and AuthorizationPolicy) follows the control plane. An
// xDS server accepts connections only once the control plane has sent its
// inbound listener.
func (in *instance) newServer(cfg *Config, tp trace.TracerProvider) (grpcServer, error) {
	sh := grpc.StatsHandler(statsHandler(tp, nil))
	if !cfg.XDSServers {
		in.markServing()
		return grpc.NewServer(sh), nil
	}
	b, err := Bootstrap(cfg.XDS, in.id)
	if err != nil {
		return nil, fmt.Errorf("xDS bootstrap for %s: %w", in.id.Workload, err)
	}
	creds, err := xdscreds.NewServerCredentials(xdscreds.ServerOptions{FallbackCreds: insecure.NewCredentials()})
	if err != nil {
		return nil, fmt.Errorf("%s: xDS server credentials: %w", in.id.Workload, err)
	}
	logger := in.logger
	srv, err := xds.NewGRPCServer(sh, grpc.Creds(creds),
		// The only public grpc-go way to give one server of several in a
		// process its own bootstrap (see xdsResolver).
		xds.BootstrapContentsForTesting(b),
		xds.ServingModeCallback(func(addr net.Addr, args xds.ServingModeChangeArgs) {
			logger.Info("xDS serving mode", "addr", addr.String(), "mode", args.Mode.String(), "err", args.Err)
			if args.Mode == connectivity.ServingModeServing {
				in.markServing()
			}
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("%s: xDS server: %w", in.id.Workload, err)
	}
	return srv, nil
}

func (in *instance) markServing() { in.servingOnce.Do(func() { close(in.serving) }) }

// Port is the port the instance listens on.
func (in *instance) Port() int { return in.lis.Addr().(*net.TCPAddr).Port }

// UnaryCall serves one request: the injected fault first (delay, then
// error), then each downstream call in order, as bookinfo's productpage
// does. The reply's hostname is the workload and its payload the call tree
// below it, e.g. "productpage-v1(details-v1,reviews-v2(ratings-v1))".
func (in *instance) UnaryCall(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	f := in.faults.Get(VersionKey{Service: in.def.Service, Version: in.def.Version})
	if f.Delay > 0 {
		t := time.NewTimer(f.Delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, status.FromContextError(ctx.Err()).Err()
		case <-t.C:
		}
	}
	if f.ErrorRate > 0 && rand.Float64() < f.ErrorRate {
		return nil, status.Errorf(codes.Unavailable, "%s: injected fault", in.def.Workload())
	}
	tree := in.def.Workload()
	var children []string
	for _, d := range in.clients {
		resp, err := d.stub.UnaryCall(ctx, &testpb.SimpleRequest{})
		if err != nil {
			// Keep the downstream code: a failing reviews makes a failing
			// productpage, which is what a user sees on the graph.
			s := status.Convert(err)
			return nil, status.Errorf(s.Code(), "%s: call %s: %s", in.def.Workload(), d.service, s.Message())
		}
		children = append(children, string(resp.GetPayload().GetBody()))
	}
	if len(children) > 0 {
		tree += "(" + strings.Join(children, ",") + ")"
	}
	return &testpb.SimpleResponse{
		Hostname: in.def.Workload(),
		ServerId: in.def.Workload(),
		Payload:  &testpb.Payload{Body: []byte(tree)},
	}, nil
}

func (in *instance) closeClients() {
	for _, d := range in.clients {
		d.conn.Close()
	}
}

// stop drains in-flight requests until ctx ends, then closes everything.
func (in *instance) stop(ctx context.Context) {
	done := make(chan struct{})
	go func() {
		in.server.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		in.server.Stop()
	}
	in.closeClients()
}
