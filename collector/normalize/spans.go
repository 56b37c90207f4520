package normalize

import (
	"iter"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"google.golang.org/grpc/codes"

	"github.com/meshlens/meshlens/mesh"
	"github.com/meshlens/meshlens/store"
)

// Spans converts every span into a span row. peers, when not nil, fills
// what a resource does not say about its service from its k8s.pod.ip.
func Spans(td ptrace.Traces, peers mesh.PeerResolver) []store.Span {
	out := make([]store.Span, 0, td.SpanCount())
	for peer, sp := range eachSpan(td, peers) {
		row := store.Span{
			Start:         sp.StartTimestamp().AsTime(),
			TraceID:       hexID(sp.TraceID()),
			SpanID:        hexID(sp.SpanID()),
			ParentSpanID:  hexID(sp.ParentSpanID()),
			Name:          sp.Name(),
			Kind:          kindName(sp.Kind()),
			Peer:          peer,
			Duration:      duration(sp),
			StatusCode:    strings.ToLower(strings.TrimPrefix(sp.Status().Code().String(), "STATUS_CODE_")),
			StatusMessage: sp.Status().Message(),
		}
		row.AttrKeys, row.AttrValues = flatten(sp.Attributes())
		out = append(out, row)
	}
	return out
}

// eachSpan yields every span of td with the peer its resource names, filled
// from the resource's Pod address by peers when not nil.
func eachSpan(td ptrace.Traces, peers mesh.PeerResolver) iter.Seq2[mesh.Peer, ptrace.Span] {
	return func(yield func(mesh.Peer, ptrace.Span) bool) {
		rss := td.ResourceSpans()
		for i := 0; i < rss.Len(); i++ {
			rs := rss.At(i)
			res := rs.Resource().Attributes()
			peer := resolveSelf(peers, PeerOf(res), res)
			sss := rs.ScopeSpans()
			for j := 0; j < sss.Len(); j++ {
				spans := sss.At(j).Spans()
				for k := 0; k < spans.Len(); k++ {
					if !yield(peer, spans.At(k)) {
						return
					}
				}
			}
		}
	}
}

// hexID formats a trace or span id; empty for the all-zero id.
func hexID[T interface {
	IsEmpty() bool
	String() string
}](id T) string {
	if id.IsEmpty() {
		return ""
	}
	return id.String()
}

func kindName(k ptrace.SpanKind) string {
	switch k {
	case ptrace.SpanKindServer:
		return "server"
	case ptrace.SpanKindClient:
		return "client"
	case ptrace.SpanKindProducer:
		return "producer"
	case ptrace.SpanKindConsumer:
		return "consumer"
	default:
		return "internal"
	}
}

func duration(sp ptrace.Span) time.Duration {
	s, e := sp.StartTimestamp(), sp.EndTimestamp()
	if e <= s {
		return 0
	}
	return time.Duration(e - s)
}

// flatten turns attributes into parallel key/value arrays, sorted by key.
func flatten(m pcommon.Map) (keys, values []string) {
	if m.Len() == 0 {
		return nil, nil
	}
	keys = make([]string, 0, m.Len())
	values = make([]string, 0, m.Len())
	m.Range(func(k string, v pcommon.Value) bool {
		keys = append(keys, k)
		values = append(values, v.AsString())
		return true
	})
	sort.Sort(byKey{keys, values})
	return keys, values
}

type byKey struct{ k, v []string }

func (b byKey) Len() int           { return len(b.k) }
func (b byKey) Less(i, j int) bool { return b.k[i] < b.k[j] }
func (b byKey) Swap(i, j int) {
	b.k[i], b.k[j] = b.k[j], b.k[i]
	b.v[i], b.v[j] = b.v[j], b.v[i]
}

// half is one side of a request seen in a span: what it knows about the call.
type half struct {
	peer     mesh.Peer // the service that emitted the span
	start    time.Time
	duration time.Duration
	traceID  string
	spanID   string
	call     callInfo
	deadline time.Time
}

// callInfo is what a span's attributes say about the request.
type callInfo struct {
	protocol   string
	method     string
	path       string
	authority  string
	code       uint16
	grpcStatus int16
	target     mesh.Peer // the callee as named by a client span
	// peerAddr is the other side's address as the span saw it: the
	// callee's for a client span, the caller's for a server span. Read
	// only when a resolver will use it.
	peerAddr string
}

// Span attributes that may carry the other side's address, under current and
// older OpenTelemetry semantic conventions, most telling first.
var (
	calleeAddrAttrs = []string{"network.peer.address", "server.address", "net.sock.peer.addr", "net.peer.ip"}
	callerAddrAttrs = []string{"client.address", "network.peer.address", "net.sock.peer.addr", "net.peer.ip"}
)

// peerAddrOf returns the first of keys holding an IP address, with or
// without port. Host names (server.address often is one) and loopback
// addresses (a sidecar in between) name no workload.
func peerAddrOf(a pcommon.Map, keys []string) string {
	for _, k := range keys {
		v := str(a, k)
		if v == "" {
			continue
		}
		ip, err := netip.ParseAddr(v)
		if err != nil {
			ap, err := netip.ParseAddrPort(v)
			if err != nil {
				continue
			}
			ip = ap.Addr()
		}
		if !ip.IsLoopback() && !ip.IsUnspecified() {
			return v
		}
	}
	return ""
}

// callOf reads what a span says about its request; withAddrs reads the
// peer's addresses too.
func callOf(sp ptrace.Span, withAddrs bool) callInfo {
	a := sp.Attributes()
	c := callInfo{protocol: "http", grpcStatus: -1}
	if str(a, "rpc.system") == "grpc" || str(a, "rpc.system.name") == "grpc" {
		c.protocol = "grpc"
		c.method = grpcMethod(str(a, "rpc.service"), str(a, "rpc.method"))
		g, ok := integer(a, "rpc.grpc.status_code")
		if !ok {
			g, ok = grpcCodeByName(str(a, "rpc.response.status_code"))
		}
		c.grpcStatus = clampGRPC(g, ok)
		if !ok && sp.Status().Code() != ptrace.StatusCodeError {
			c.grpcStatus = 0
		}
	} else {
		c.method = firstNonEmpty(str(a, "http.request.method"), str(a, "http.method"))
		c.path = firstNonEmpty(str(a, "url.path"), str(a, "http.route"), str(a, "http.target"))
	}
	code, ok := integer(a, "http.response.status_code", "http.status_code")
	if ok {
		c.code = clampCode(code)
	} else if c.protocol == "grpc" {
		c.code = 200 // gRPC rides on HTTP/2 200; the outcome is in grpcStatus
	} else if sp.Status().Code() == ptrace.StatusCodeError {
		c.code = 500
	} else {
		c.code = 200
	}
	host := firstNonEmpty(str(a, "server.address"), str(a, "net.peer.name"), str(a, "peer.service"))
	c.authority = host
	if host != "" {
		host = strings.TrimPrefix(host, "xds:///")
		if i := strings.LastIndexByte(host, ':'); i > 0 {
			host = host[:i]
		}
		svc, ns := mesh.ServiceOfHost(host)
		c.target = mesh.Peer{Service: svc, Namespace: ns}
	}
	if ps := str(a, "peer.service"); ps != "" {
		c.target.Service = ps
	}
	if withAddrs {
		keys := calleeAddrAttrs
		if sp.Kind() == ptrace.SpanKindServer {
			keys = callerAddrAttrs
		}
		c.peerAddr = peerAddrOf(a, keys)
	}
	return c
}

// grpcCodeByName reads a gRPC status the way newer semantic conventions
// write it in rpc.response.status_code: "UNAVAILABLE", or a number.
func grpcCodeByName(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n, true
	}
	want := strings.ReplaceAll(strings.ToUpper(s), "_", "")
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		if strings.ToUpper(c.String()) == want {
			return int64(c), true
		}
	}
	return 0, false
}

// grpcMethod returns the full gRPC method "/pkg.Service/Method". Older
// semantic conventions split it into rpc.service and rpc.method; newer ones
// put "pkg.Service/Method" in rpc.method alone.
func grpcMethod(service, method string) string {
	switch {
	case strings.Contains(method, "/"):
		return "/" + strings.TrimPrefix(method, "/")
	case service == "" && method == "":
		return ""
	default:
		return "/" + service + "/" + method
	}
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// Pairer turns client/server span pairs into one request record each. A
// server span's parent is the client span of the caller; the two usually
// arrive in different batches from different services, so each half waits up
// to Wait for the other. A half that waits in vain still becomes a record: a
// server span with an unknown caller, or a client span calling an
// uninstrumented service (named by server.address or peer.service).
type Pairer struct {
	Wait       time.Duration // how long a half waits for its other half
	MaxPending int           // bound on waiting halves; the oldest are released early
	// Peers, when set, names the workloads behind addresses where the spans
	// do not: a service's own (its resource's k8s.pod.ip), the callee of a
	// client span (network.peer.address, server.address, ...) and the
	// caller of a server span (client.address, network.peer.address, ...).
	Peers mesh.PeerResolver

	mu      sync.Mutex
	clients map[string]*half // by client span id
	servers map[string]*half // by parent span id (= the client span id)
	order   []pendingRef     // insertion order, for expiry
}

type pendingRef struct {
	server bool
	key    string
	h      *half
}

// NewPairer returns a Pairer with the given wait and bound.
func NewPairer(wait time.Duration, maxPending int) *Pairer {
	return &Pairer{Wait: wait, MaxPending: maxPending, clients: map[string]*half{}, servers: map[string]*half{}}
}

// Add feeds spans and returns the records completed by them: pairs found,
// root server spans (no parent: the caller is outside the traces), and halves
// released early because the pending bound was reached.
func (p *Pairer) Add(td ptrace.Traces, now time.Time) []mesh.Record {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []mesh.Record
	for peer, sp := range eachSpan(td, p.Peers) {
		kind := sp.Kind()
		if kind != ptrace.SpanKindServer && kind != ptrace.SpanKindClient {
			continue
		}
		h := &half{
			peer:     peer,
			start:    sp.StartTimestamp().AsTime(),
			duration: duration(sp),
			traceID:  hexID(sp.TraceID()),
			spanID:   hexID(sp.SpanID()),
			call:     callOf(sp, p.Peers != nil),
			deadline: now.Add(p.Wait),
		}
		if kind == ptrace.SpanKindServer {
			parent := hexID(sp.ParentSpanID())
			if parent == "" {
				out = append(out, p.serverOnly(h))
				continue
			}
			if c, ok := p.clients[parent]; ok {
				delete(p.clients, parent)
				out = append(out, p.pair(c, h))
				continue
			}
			p.servers[parent] = h
			p.order = append(p.order, pendingRef{true, parent, h})
		} else {
			if s, ok := p.servers[h.spanID]; ok {
				delete(p.servers, h.spanID)
				out = append(out, p.pair(h, s))
				continue
			}
			p.clients[h.spanID] = h
			p.order = append(p.order, pendingRef{false, h.spanID, h})
		}
	}
	for p.MaxPending > 0 && len(p.clients)+len(p.servers) > p.MaxPending {
		out = p.releaseOldest(out)
	}
	return out
}

// Expire releases the halves whose wait is over, as unpaired records.
func (p *Pairer) Expire(now time.Time) []mesh.Record {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []mesh.Record
	for len(p.order) > 0 && !p.order[0].h.deadline.After(now) {
		out = p.releaseOldest(out)
	}
	return out
}

// Pending is the number of halves waiting.
func (p *Pairer) Pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.clients) + len(p.servers)
}

func (p *Pairer) releaseOldest(out []mesh.Record) []mesh.Record {
	for len(p.order) > 0 {
		ref := p.order[0]
		p.order[0] = pendingRef{}
		p.order = p.order[1:]
		m := p.clients
		if ref.server {
			m = p.servers
		}
		if m[ref.key] != ref.h {
			continue // already paired
		}
		delete(m, ref.key)
		if ref.server {
			return append(out, p.serverOnly(ref.h))
		}
		return append(out, p.clientOnly(ref.h))
	}
	return out
}

// other names the other side of h's call: what the telemetry says about it,
// filled from the address h's span saw.
func (p *Pairer) other(h *half, said mesh.Peer) mesh.Peer {
	if p.Peers == nil || known(said) {
		return said
	}
	return resolve(p.Peers, said, h.call.peerAddr)
}

// pair joins a client span and its server span. Each side is named by its
// own resource first, then by the address the other side saw.
func (p *Pairer) pair(client, server *half) mesh.Record {
	r := record(server)
	r.Source = p.other(server, client.peer)
	r.Destination = p.other(client, server.peer)
	// The caller's view of the duration is what an edge's latency means.
	r.Time, r.Duration = client.start, client.duration
	if server.call.method == "" {
		r.Method = client.call.method
	}
	return r
}

// serverOnly is a server span whose caller never reported: the caller is
// unknown unless the registry knows its address.
func (p *Pairer) serverOnly(server *half) mesh.Record {
	r := record(server)
	r.Destination = server.peer
	r.Source = p.other(server, mesh.Peer{})
	return r
}

// clientOnly is a client span whose callee never reported: the callee is
// what the span names, and what the registry knows of its address.
func (p *Pairer) clientOnly(client *half) mesh.Record {
	r := record(client)
	r.Source = client.peer
	r.Destination = p.other(client, client.call.target)
	if r.Destination.Namespace == "" {
		r.Destination.Namespace = client.peer.Namespace
	}
	return r
}

func record(h *half) mesh.Record {
	return mesh.Record{
		Time:       h.start,
		Protocol:   h.call.protocol,
		Method:     h.call.method,
		Path:       h.call.path,
		Authority:  h.call.authority,
		Code:       h.call.code,
		GRPCStatus: h.call.grpcStatus,
		Flags:      "-",
		Duration:   h.duration,
		TraceID:    h.traceID,
		SpanID:     h.spanID,
		Origin:     mesh.OriginSpanPair,
	}
}
