// Package listeners holds what every meshlens listener shares: the limits
// that keep a client from exhausting memory or holding connections (body,
// message and header sizes, read/write/idle timeouts, concurrent streams),
// and the metrics that say when one of them bites.
package listeners

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
)

// Limits bound what one client may send and how long it may hold a
// connection.
type Limits struct {
	// MaxBodyBytes bounds an HTTP request body (the API; OTLP/HTTP uses
	// MaxMessageBytes).
	MaxBodyBytes int64 `json:"http-max-body-bytes"`
	// MaxHeaderBytes bounds an HTTP request's header.
	MaxHeaderBytes int `json:"http-max-header-bytes"`
	// ReadTimeout bounds reading one HTTP request, header and body.
	ReadTimeout time.Duration `json:"http-read-timeout"`
	// WriteTimeout bounds writing one HTTP response.
	WriteTimeout time.Duration `json:"http-write-timeout"`
	// IdleTimeout closes a kept-alive HTTP connection idle this long.
	IdleTimeout time.Duration `json:"http-idle-timeout"`
	// MaxMessageBytes bounds one gRPC message (OTLP, ALS, xDS) and one
	// OTLP/HTTP request body.
	MaxMessageBytes int `json:"grpc-max-message-bytes"`
	// MaxConcurrentStreams bounds the concurrent gRPC streams (and calls)
	// of one connection.
	MaxConcurrentStreams uint32 `json:"grpc-max-concurrent-streams"`
}

// DefaultLimits are the documented defaults.
func DefaultLimits() Limits {
	return Limits{
		MaxBodyBytes:         16 << 20,
		MaxHeaderBytes:       64 << 10,
		ReadTimeout:          30 * time.Second,
		WriteTimeout:         2 * time.Minute,
		IdleTimeout:          2 * time.Minute,
		MaxMessageBytes:      64 << 20,
		MaxConcurrentStreams: 1000,
	}
}

// Validate names the first setting out of range.
func (l Limits) Validate() error {
	switch {
	case l.MaxBodyBytes < 1<<10:
		return fmt.Errorf("--http-max-body-bytes %d: must be at least 1024", l.MaxBodyBytes)
	case l.MaxHeaderBytes < 1<<10:
		return fmt.Errorf("--http-max-header-bytes %d: must be at least 1024", l.MaxHeaderBytes)
	case l.ReadTimeout <= 0:
		return fmt.Errorf("--http-read-timeout %s: must be positive", l.ReadTimeout)
	case l.WriteTimeout <= 0:
		return fmt.Errorf("--http-write-timeout %s: must be positive", l.WriteTimeout)
	case l.IdleTimeout <= 0:
		return fmt.Errorf("--http-idle-timeout %s: must be positive", l.IdleTimeout)
	case l.MaxMessageBytes < 1<<10:
		return fmt.Errorf("--grpc-max-message-bytes %d: must be at least 1024", l.MaxMessageBytes)
	case l.MaxConcurrentStreams < 1:
		return fmt.Errorf("--grpc-max-concurrent-streams %d: must be at least 1", l.MaxConcurrentStreams)
	}
	return nil
}

// Names of the limits, as meshlens_limit_exceeded_total labels them.
const (
	LimitBody         = "body_bytes"
	LimitMessage      = "message_bytes"
	LimitReadTimeout  = "read_timeout"
	LimitWriteTimeout = "write_timeout"
	LimitEntryRate    = "entry_rate" // ALS entries per second of one stream
)

// Metrics count limits that bite and the streams open, by listener.
type Metrics struct {
	exceeded *prometheus.CounterVec
	streams  *prometheus.GaugeVec
}

// NewMetrics registers the metrics with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		exceeded: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshlens_limit_exceeded_total",
			Help: "Requests, messages or connections refused or cut because they passed a limit, by listener (http, otlp_grpc, otlp_http, als, xds) and limit (body_bytes, message_bytes, read_timeout, write_timeout, entry_rate)."},
			[]string{"listener", "limit"}),
		streams: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "meshlens_grpc_streams",
			Help: "gRPC streams and calls open now, by listener; --grpc-max-concurrent-streams bounds them per connection."},
			[]string{"listener"}),
	}
	for _, c := range []prometheus.Collector{m.exceeded, m.streams} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("listener metrics: %w", err)
		}
	}
	return m, nil
}

// Exceeded counts one bite of limit on listener.
func (m *Metrics) Exceeded(listener, limit string) {
	m.exceeded.WithLabelValues(listener, limit).Inc()
}

// GRPCServerOptions bound a gRPC server's messages and streams and count
// messages refused for their size.
func (m *Metrics) GRPCServerOptions(listener string, l Limits) []grpc.ServerOption {
	g := &grpcStats{m: m, listener: listener}
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(l.MaxMessageBytes),
		grpc.MaxConcurrentStreams(l.MaxConcurrentStreams),
		grpc.StatsHandler(g),
		grpc.ChainStreamInterceptor(g.intercept),
	}
}

// grpcStats counts a listener's open streams and calls, and messages
// refused for their size. grpc-go refuses an oversized unary request before
// any interceptor runs (the stats handler sees the call end with it); a
// stream's oversized message is an error of RecvMsg, which the interceptor
// sees whatever the handler makes of it.
type grpcStats struct {
	m        *Metrics
	listener string
}

type rpcKey struct{}

// rpcState is one call's, kept in its context from TagRPC on.
type rpcState struct{ stream bool }

func (g *grpcStats) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context {
	return context.WithValue(ctx, rpcKey{}, &rpcState{})
}
func (g *grpcStats) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (g *grpcStats) HandleConn(context.Context, stats.ConnStats) {}

func (g *grpcStats) HandleRPC(ctx context.Context, s stats.RPCStats) {
	st, _ := ctx.Value(rpcKey{}).(*rpcState)
	switch s := s.(type) {
	case *stats.Begin:
		g.m.streams.WithLabelValues(g.listener).Inc()
		if st != nil {
			st.stream = s.IsClientStream || s.IsServerStream
		}
	case *stats.End:
		g.m.streams.WithLabelValues(g.listener).Dec()
		if st != nil && !st.stream && isSizeError(s.Error) {
			g.m.Exceeded(g.listener, LimitMessage)
		}
	}
}

func (g *grpcStats) intercept(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, &sizedStream{ServerStream: ss, g: g})
}

type sizedStream struct {
	grpc.ServerStream
	g       *grpcStats
	counted bool
}

func (s *sizedStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if !s.counted && isSizeError(err) {
		s.counted = true
		s.g.m.Exceeded(s.g.listener, LimitMessage)
	}
	return err
}

// isSizeError tells grpc-go's "message larger than max" from other
// ResourceExhausted answers (a full ingest queue).
func isSizeError(err error) bool {
	st, ok := status.FromError(err)
	return ok && err != nil && st.Code() == codes.ResourceExhausted && strings.Contains(st.Message(), "larger than max")
}

// LimitBody wraps h so that a request body past max is refused with 413
// (by its Content-Length, or once reading passes max) and counted.
func (m *Metrics) LimitBody(listener string, max int64, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > max {
			m.Exceeded(listener, LimitBody)
			http.Error(w, fmt.Sprintf("request body of %d bytes is larger than the limit, %d bytes", r.ContentLength, max), http.StatusRequestEntityTooLarge)
			return
		}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = &countedBody{ReadCloser: http.MaxBytesReader(w, r.Body, max), onLimit: func() { m.Exceeded(listener, LimitBody) }}
		}
		h.ServeHTTP(w, r)
	})
}

type countedBody struct {
	io.ReadCloser
	once    sync.Once
	onLimit func()
}

func (b *countedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		b.once.Do(b.onLimit)
	}
	return n, err
}

// HTTPServer is an http.Server for h with l's header size and timeouts;
// Serve it on Listener(ln) to count the timeouts that cut requests.
func (m *Metrics) HTTPServer(listener string, l Limits, h http.Handler) *http.Server {
	return &http.Server{
		Handler:           m.LimitBody(listener, l.MaxBodyBytes, h),
		MaxHeaderBytes:    l.MaxHeaderBytes,
		ReadHeaderTimeout: l.ReadTimeout,
		ReadTimeout:       l.ReadTimeout,
		WriteTimeout:      l.WriteTimeout,
		IdleTimeout:       l.IdleTimeout,
		ConnState:         ConnState,
	}
}

// ConnState is the http.Server ConnState hook that Listener's connections
// need to tell a request in flight from an idle kept-alive connection; an
// http.Server made elsewhere (the OTLP/HTTP receiver's, by confighttp) sets
// it before serving on Listener.
func ConnState(c net.Conn, s http.ConnState) {
	if t, ok := c.(*tls.Conn); ok {
		c = t.NetConn()
	}
	if tc, ok := c.(*timedConn); ok {
		tc.mu.Lock()
		tc.state = s
		tc.idleDeadlines = 0
		tc.mu.Unlock()
	}
}

// Listener wraps ln so that a connection cut by a read or write deadline
// while a request is in flight (a slow client) is counted; idle
// connections closed by the idle timeout are not.
func (m *Metrics) Listener(listener string, ln net.Listener) net.Listener {
	return &timedListener{Listener: ln, m: m, name: listener}
}

type timedListener struct {
	net.Listener
	m    *Metrics
	name string
}

func (l *timedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &timedConn{Conn: c, l: l, state: http.StateNew}, nil
}

type timedConn struct {
	net.Conn
	l *timedListener

	mu      sync.Mutex
	state   http.ConnState
	counted bool
	aborted bool // the read deadline was set in the past: net/http stopping its own read
	// idleDeadlines counts the read deadlines set since the connection
	// went idle. net/http sets two: the idle timeout, then, once the first
	// bytes of the next request arrive, the header timeout. After the
	// second the connection is reading a request, though net/http calls
	// it idle until the whole header is in.
	idleDeadlines int
}

func (c *timedConn) SetReadDeadline(t time.Time) error {
	c.noteReadDeadline(t)
	return c.Conn.SetReadDeadline(t)
}

func (c *timedConn) SetDeadline(t time.Time) error {
	c.noteReadDeadline(t)
	return c.Conn.SetDeadline(t)
}

func (c *timedConn) noteReadDeadline(t time.Time) {
	c.mu.Lock()
	c.aborted = !t.IsZero() && time.Until(t) < -time.Hour
	if c.state == http.StateIdle {
		c.idleDeadlines++
		if c.idleDeadlines >= 2 {
			// The next request has begun: a stall from here on is a
			// slow client, not an idle connection.
			c.state = http.StateActive
		}
	}
	c.mu.Unlock()
}

func (c *timedConn) deadline(err error, limit string) {
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counted || c.state == http.StateIdle || (limit == LimitReadTimeout && c.aborted) {
		return
	}
	c.counted = true
	c.l.m.Exceeded(c.l.name, limit)
}

func (c *timedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil {
		c.deadline(err, LimitReadTimeout)
	}
	return n, err
}

func (c *timedConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if err != nil {
		c.deadline(err, LimitWriteTimeout)
	}
	return n, err
}
