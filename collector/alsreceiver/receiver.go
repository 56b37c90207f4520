package alsreceiver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/receiver"
	"go.uber.org/zap"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

type alsReceiver struct {
	alsv3.UnimplementedAccessLogServiceServer

	cfg     *Config
	set     receiver.Settings
	next    consumer.Logs
	metrics Metrics
	opts    []grpc.ServerOption

	mu     sync.Mutex
	server *grpc.Server
	done   chan struct{}
	ctx    context.Context
	cancel context.CancelFunc
}

func newReceiver(cfg *Config, set receiver.Settings, next consumer.Logs, metrics Metrics, opts []grpc.ServerOption) *alsReceiver {
	if metrics == nil {
		metrics = nopMetrics{}
	}
	return &alsReceiver{cfg: cfg, set: set, next: next, metrics: metrics, opts: opts}
}

type nopMetrics struct{}

func (nopMetrics) Malformed()   {}
func (nopMetrics) RateLimited() {}

func (r *alsReceiver) Start(_ context.Context, _ component.Host) error {
	ln, err := net.Listen("tcp", r.cfg.Endpoint)
	if err != nil {
		return fmt.Errorf("envoy ALS receiver: listen on %s: %w", r.cfg.Endpoint, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ctx, r.cancel = context.WithCancel(context.Background())
	// Options given later (meshlens' limits) win over the config's.
	r.server = grpc.NewServer(append([]grpc.ServerOption{grpc.MaxRecvMsgSize(r.cfg.MaxRecvMsgSizeMiB << 20)}, r.opts...)...)
	alsv3.RegisterAccessLogServiceServer(r.server, r)
	r.done = make(chan struct{})
	go func() {
		defer close(r.done)
		if err := r.server.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			r.set.Logger.Error("envoy ALS receiver stopped", zap.Error(err))
		}
	}()
	r.set.Logger.Info("envoy ALS receiver listening", zap.String("endpoint", ln.Addr().String()))
	return nil
}

func (r *alsReceiver) Shutdown(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.server == nil {
		return nil
	}
	r.cancel() // stop retry loops of open streams
	stopped := make(chan struct{})
	go func() { r.server.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-ctx.Done():
		r.server.Stop()
	}
	<-r.done
	return nil
}

// StreamAccessLogs reads one Envoy stream. The first message carries the
// proxy's identity; later ones may omit it. When the pipeline refuses entries
// for a transient reason (a full queue), the stream stops reading and retries
// the same entries: gRPC flow control then pushes back on Envoy instead of
// anything being dropped.
func (r *alsReceiver) StreamAccessLogs(stream alsv3.AccessLogService_StreamAccessLogsServer) error {
	var ident *identity
	var limiter *rate.Limiter
	if n := r.cfg.MaxEntriesPerSecond; n > 0 {
		limiter = rate.NewLimiter(rate.Limit(n), n)
	}
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&alsv3.StreamAccessLogsResponse{})
		}
		if err != nil {
			if status.Code(err) == codes.Canceled {
				return nil
			}
			return err
		}
		if id := msg.GetIdentifier(); id != nil {
			got, err := identityOf(id)
			if err != nil {
				r.metrics.Malformed()
				return status.Error(codes.InvalidArgument, err.Error())
			}
			ident = &got
		}
		if ident == nil {
			r.metrics.Malformed()
			return status.Error(codes.InvalidArgument, "the first message of an ALS stream must carry identifier.node")
		}
		logs, n, err := toLogs(*ident, msg)
		if err != nil {
			r.metrics.Malformed()
			return status.Error(codes.InvalidArgument, err.Error())
		}
		if n == 0 {
			continue
		}
		if err := r.wait(stream.Context(), limiter, n); err != nil {
			return err
		}
		if err := r.consume(stream.Context(), logs); err != nil {
			return err
		}
	}
}

// wait holds a stream that sends more than its rate: the next message is
// read only when its entries fit.
func (r *alsReceiver) wait(ctx context.Context, limiter *rate.Limiter, n int) error {
	if limiter == nil {
		return nil
	}
	res := limiter.ReserveN(time.Now(), min(n, limiter.Burst()))
	d := res.Delay()
	if d == 0 {
		return nil
	}
	r.metrics.RateLimited()
	select {
	case <-ctx.Done():
		res.Cancel()
		return status.FromContextError(ctx.Err()).Err()
	case <-time.After(d):
		return nil
	}
}

func (r *alsReceiver) consume(ctx context.Context, pl plog.Logs) error {
	backoff := 50 * time.Millisecond
	for {
		err := r.next.ConsumeLogs(ctx, pl)
		if err == nil {
			return nil
		}
		if consumererror.IsPermanent(err) {
			r.metrics.Malformed()
			return status.Errorf(codes.InvalidArgument, "access log entries refused: %v", err)
		}
		r.set.Logger.Warn("envoy ALS: pipeline is full, holding the stream", zap.Error(err), zap.Duration("retry_in", backoff))
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-r.ctx.Done():
			return status.Error(codes.Unavailable, "meshlens is shutting down; resend")
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}
