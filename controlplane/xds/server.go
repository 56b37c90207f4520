package xds

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	routeservice "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	secretservice "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/log"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	sotw "github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"

	"github.com/meshlens/meshlens/controlplane/config"
	"github.com/meshlens/meshlens/controlplane/credentials"
	"github.com/meshlens/meshlens/controlplane/jwks"
	"github.com/meshlens/meshlens/controlplane/registry"
)

// DefaultAddr is the default --xds listen address (Istio's plaintext xDS port).
const DefaultAddr = "127.0.0.1:15010"

// Node metadata keys meshlens reads (Istio's names where Istio has one).
const (
	MetaGenerator   = "GENERATOR"        // "grpc" marks a proxyless gRPC node (Istio)
	MetaFlavour     = "MESHLENS_FLAVOUR" // "grpc", "envoy" or "gateway" (an Envoy gateway), overrides detection
	MetaNamespace   = "NAMESPACE"        // workload namespace (Istio)
	MetaInstanceIPs = "INSTANCE_IPS"     // comma-separated workload IPs (Istio)
	MetaLabels      = "LABELS"           // workload labels, a struct (Istio)
	MetaCertChain   = "TLS_CERT_CHAIN"   // Envoy: certificate chain file
	MetaPrivateKey  = "TLS_PRIVATE_KEY"  // Envoy: private key file
	MetaRootCA      = "TLS_ROOT_CA"      // Envoy: CA bundle file
)

// ProxyStatus is one connected node as the control plane sees it.
type ProxyStatus struct {
	ID          string    `json:"id"`
	Cluster     string    `json:"cluster,omitempty"`
	Flavour     Flavour   `json:"flavour"`
	ConnectedAt time.Time `json:"connectedAt"`
	// Version is the version of the node's current snapshot; the node is
	// InSync when it has ACKed that version of every type it subscribes to.
	Version          string            `json:"version"`
	InSync           bool              `json:"inSync"`
	LastAckedVersion string            `json:"lastAckedVersion,omitempty"`
	LastAckAt        time.Time         `json:"lastAckAt,omitzero"`
	Acked            map[string]string `json:"acked,omitempty"` // type URL → version
	LastNack         *Nack             `json:"lastNack,omitempty"`
}

// Nack is a rejected push.
type Nack struct {
	Version string    `json:"version"`
	TypeURL string    `json:"typeUrl"`
	Message string    `json:"message"`
	At      time.Time `json:"at"`
}

// Server is meshlens' ADS server: it translates each config snapshot for
// every connected node and hands the result to go-control-plane's snapshot
// cache, which answers the streams. A push only replaces per-node snapshots;
// the cache answers each stream from its own buffered channel, so a slow or
// stuck client never delays the others.
type Server struct {
	log     *slog.Logger
	opts    Options
	cache   cachev3.SnapshotCache
	xds     serverv3.Server
	metrics *metrics

	// pushMu orders snapshot installs: an Update and a newly connecting node
	// must not install an older translation over a newer one.
	pushMu   sync.Mutex
	config   *config.Snapshot
	services *registry.Snapshot
	jwks     *jwks.Keys
	creds    *credentials.Snapshot
	push     uint64
	// translator makes each push's resources, sharing what nodes have in
	// common and reusing what the push did not change.
	translator *Translator
	// classes are the node classes of connected nodes with their latest
	// translation: a fleet reconnecting after a restart costs one
	// translation per class.
	classes map[string]*class

	mu      sync.Mutex
	nodes   map[string]*nodeState // by node ID
	streams map[int64]*streamState

	listening atomic.Bool // for Health
	// requireIdentity: nodes must claim the namespace of their client
	// certificate's SPIFFE ID (see RequireIdentity).
	requireIdentity bool
}

type nodeState struct {
	node        Node
	cluster     string
	connectedAt time.Time
	streams     int
	version     string            // snapshot version installed
	typeVersion map[string]string // type URL → version in the installed snapshot
	typeHash    map[string][32]byte
	subscribed  map[string]bool
	acked       map[string]string
	ackedAt     map[string]time.Time
	lastAcked   string
	lastAckAt   time.Time
	lastNack    *Nack
}

func newNodeState(node Node, cluster string) *nodeState {
	return &nodeState{
		node: node, cluster: cluster, connectedAt: time.Now(),
		typeVersion: map[string]string{}, typeHash: map[string][32]byte{},
		subscribed: map[string]bool{}, acked: map[string]string{}, ackedAt: map[string]time.Time{},
	}
}

type streamState struct {
	ids    []Identity // the client certificate's, when identity is required
	idErr  error
	nodeID string
	sent   map[string]sentResponse // type URL → last response on this stream
}

type sentResponse struct{ nonce, version string }

type metrics struct {
	pushes          *prometheus.CounterVec
	nacks           *prometheus.CounterVec
	connected       prometheus.Gauge
	pushSeconds     prometheus.Histogram
	translateErrors prometheus.Counter
	authnRefused    prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_xds_pushes_total", Help: "xDS responses sent to proxies, by resource type.",
		}, []string{"type"}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_xds_nacks_total", Help: "xDS responses rejected by proxies, by resource type.",
		}, []string{"type"}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshlens_xds_connected_proxies", Help: "Proxies with an open xDS stream.",
		}),
		pushSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "meshlens_xds_push_duration_seconds", Help: "Time to translate a config snapshot and install it for every node.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		translateErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_xds_translate_errors_total", Help: "Translations that failed; the node keeps its previous resources.",
		}),
		authnRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshlens_xds_identity_refused_total", Help: "xDS streams refused because the node's claimed namespace or service account is not its certificate's SPIFFE identity.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.pushes, m.nacks, m.connected, m.pushSeconds, m.translateErrors, m.authnRefused} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register xds metrics: %w", err)
			}
		}
	}
	return m, nil
}

// NewServer builds the ADS server. reg may be nil (no metrics exported).
// Start serving with Serve, or register on your own gRPC server with Register.
func NewServer(ctx context.Context, logger *slog.Logger, reg prometheus.Registerer, opts Options) (*Server, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	s := &Server{
		log:     logger,
		opts:    mergeDefaults(opts),
		metrics: m,
		nodes:   map[string]*nodeState{},
		streams: map[int64]*streamState{},
		config:  &config.Snapshot{},
		classes: map[string]*class{},
	}
	s.translator = NewTranslator(s.opts)
	// ads=false: in ADS mode the cache only answers requests naming every
	// resource in the snapshot, but proxyless gRPC asks for single listeners.
	s.cache = cachev3.NewSnapshotCache(false, cachev3.IDHash{}, cacheLogger{logger})
	// Ordered ADS multiplexes a stream's watches on one channel with a slot
	// per resource type: cheaper than a select over per-watch channels, and
	// the cache still never blocks on a stream that does not read.
	s.xds = serverv3.NewServer(ctx, s.cache, s.callbacks(), sotw.WithOrderedADS())
	return s, nil
}

// Register adds the ADS and per-type discovery services to a gRPC server.
func (s *Server) Register(g *grpc.Server) {
	discovery.RegisterAggregatedDiscoveryServiceServer(g, s.xds)
	listenerservice.RegisterListenerDiscoveryServiceServer(g, s.xds)
	routeservice.RegisterRouteDiscoveryServiceServer(g, s.xds)
	clusterservice.RegisterClusterDiscoveryServiceServer(g, s.xds)
	endpointservice.RegisterEndpointDiscoveryServiceServer(g, s.xds)
	secretservice.RegisterSecretDiscoveryServiceServer(g, s.xds)
}

// Serve listens on addr (e.g. DefaultAddr) and serves xDS until ctx ends.
// opts go to the gRPC server (limits, credentials).
func (s *Server) Serve(ctx context.Context, addr string, opts ...grpc.ServerOption) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("xds listen %s: %w", addr, err)
	}
	return s.ServeListener(ctx, lis, opts...)
}

// ServeListener serves xDS on lis until ctx ends.
func (s *Server) ServeListener(ctx context.Context, lis net.Listener, opts ...grpc.ServerOption) error {
	g := grpc.NewServer(append([]grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	}, opts...)...)
	s.Register(g)
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			g.Stop()
		case <-done:
		}
	}()
	s.log.Info("xds server listening", "addr", lis.Addr().String())
	s.listening.Store(true)
	err := g.Serve(lis)
	s.listening.Store(false)
	close(done)
	if err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("xds serve: %w", err)
	}
	return nil
}

// Update translates a new config snapshot for every connected node and
// pushes what changed. Nodes whose translation fails keep their previous
// resources; the errors are returned joined.
func (s *Server) Update(snap *config.Snapshot) error {
	if snap == nil {
		snap = &config.Snapshot{}
	}
	s.pushMu.Lock()
	defer s.pushMu.Unlock()
	s.config = snap
	return s.pushAll()
}

// UpdateServices is Update for a new service registry snapshot (a Pod
// turning ready, a Service scaled): every node's resources are rebuilt from
// the current config and the new registry, and only what changed is sent.
func (s *Server) UpdateServices(sn *registry.Snapshot) error {
	s.pushMu.Lock()
	defer s.pushMu.Unlock()
	s.services = sn
	return s.pushAll()
}

// UpdateJWKS is Update for new RequestAuthentication key sets fetched by
// meshlens (jwks.Resolver's OnChange): nodes' JWT filters carry them inline.
func (s *Server) UpdateJWKS(k *jwks.Keys) error {
	s.pushMu.Lock()
	defer s.pushMu.Unlock()
	s.jwks = k
	return s.pushAll()
}

// UpdateCredentials is Update for a new snapshot of the cluster's Secrets:
// gateway proxies get their servers' certificates over SDS, the rotated
// ones pushed. Never called without a cluster: credentialName stays files.
func (s *Server) UpdateCredentials(c *credentials.Snapshot) error {
	s.pushMu.Lock()
	defer s.pushMu.Unlock()
	s.creds = c
	return s.pushAll()
}

// pushAll installs a new translation for every node. Caller holds pushMu.
func (s *Server) pushAll() error {
	start := time.Now()
	snap := s.config
	s.push++
	version := fmt.Sprintf("%d.%d", snap.Version, s.push)

	s.mu.Lock()
	ids := make([]string, 0, len(s.nodes))
	for id := range s.nodes {
		ids = append(ids, id)
	}
	s.mu.Unlock()
	slices.Sort(ids)

	var errs []error
	for _, id := range ids {
		if err := s.install(id, version); err != nil {
			errs = append(errs, err)
		}
	}
	// A class no node used in this push has no node left.
	maps.DeleteFunc(s.classes, func(_ string, c *class) bool { return c.push != s.push })
	s.translator.Sweep()
	s.metrics.pushSeconds.Observe(time.Since(start).Seconds())
	return errors.Join(errs...)
}

// class is the state the nodes of one class share: they get identical
// resources, so they share one translation per push.
type class struct {
	node Node   // one of them
	push uint64 // the push result was made for
	res  map[string][]types.Resource
	err  error
	// hashes fingerprint each type's resources, to tell nodes whether
	// it changed; resourceHash holds each resource's own, by identity,
	// so only resources the Translator did not reuse are marshalled.
	hashes       map[string][32]byte
	resourceHash map[types.Resource][32]byte
	// built shares go-control-plane's indexed resources between the
	// class's nodes, by type and version.
	built map[string]cachev3.Resources
}

// translate makes the class's result for the current push.
func (s *Server) translate(c *class) {
	c.push, c.built = s.push, map[string]cachev3.Resources{}
	res, err := s.translator.Translate(Input{Config: s.config, Services: s.services, JWKS: s.jwks, Credentials: s.creds}, c.node)
	if err != nil {
		c.res, c.err = nil, err
		return
	}
	c.res, c.err = res.ByType(), nil
	c.hashes = make(map[string][32]byte, len(c.res))
	hashes := make(map[types.Resource][32]byte, len(c.resourceHash))
	marshal := proto.MarshalOptions{Deterministic: true}
	for typ, items := range c.res {
		h := sha256.New()
		for _, it := range items {
			sum, ok := c.resourceHash[it]
			if !ok {
				b, err := marshal.Marshal(it)
				if err != nil {
					c.res, c.err = nil, fmt.Errorf("marshal %s %s: %w", typ, cachev3.GetResourceName(it), err)
					return
				}
				sum = sha256.Sum256(b)
			}
			hashes[it] = sum
			h.Write(sum[:])
		}
		c.hashes[typ] = [32]byte(h.Sum(nil))
	}
	c.resourceHash = hashes
}

// resources is the class's resources of typ at version, indexed once for
// all its nodes.
func (c *class) resources(typ, version string) cachev3.Resources {
	key := typ + "@" + version
	r, ok := c.built[key]
	if !ok {
		r = cachev3.NewResources(version, c.res[typ])
		c.built[key] = r
	}
	return r
}

// install translates (or reuses the class's translation for this push) and
// sets the node's snapshot. Caller holds pushMu.
func (s *Server) install(id, version string) error {
	s.mu.Lock()
	ns, ok := s.nodes[id]
	if !ok {
		s.mu.Unlock()
		return nil
	}
	node := ns.node
	s.mu.Unlock()

	key := classKey(node)
	c := s.classes[key]
	if c == nil {
		c = &class{node: node}
		s.classes[key] = c
	}
	if c.push != s.push || (c.res == nil && c.err == nil) {
		s.translate(c)
	}
	if c.err != nil {
		s.metrics.translateErrors.Inc()
		s.log.Error("xds translation failed; node keeps its previous resources", "node", id, "err", c.err)
		return c.err
	}

	s.mu.Lock()
	snap := &cachev3.Snapshot{}
	for typ := range c.res {
		v := version
		if ns.typeHash[typ] == c.hashes[typ] && ns.typeVersion[typ] != "" {
			v = ns.typeVersion[typ] // unchanged: keep the version so nothing is resent
		}
		ns.typeHash[typ] = c.hashes[typ]
		ns.typeVersion[typ] = v
		snap.Resources[cachev3.GetResponseType(typ)] = c.resources(typ, v)
	}
	ns.version = version
	s.mu.Unlock()

	if err := s.cache.SetSnapshot(context.Background(), id, snap); err != nil {
		return fmt.Errorf("set snapshot for node %s: %w", id, err)
	}
	return nil
}

// classKey identifies nodes that get identical resources.
func classKey(n Node) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s|%t|%s|%s|%s|%s|%s|", n.Flavour, n.Gateway, n.Namespace, strings.Join(n.IPs, ","), n.CertChainPath, n.PrivateKeyPath, n.RootCAPath)
	keys := sortedKeys(n.Labels)
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%s,", k, n.Labels[k])
	}
	return b.String()
}

// NodeFromProto describes a node from its xDS Node message: proxyless gRPC
// is recognised by Istio's GENERATOR=grpc metadata or grpc's user agent.
func NodeFromProto(n *corev3.Node) Node {
	out := Node{ID: n.GetId(), Flavour: FlavourEnvoy}
	md := n.GetMetadata().GetFields()
	str := func(k string) string { return md[k].GetStringValue() }
	if strings.HasPrefix(strings.ToLower(n.GetUserAgentName()), "grpc") || str(MetaGenerator) == "grpc" {
		out.Flavour = FlavourGRPC
	}
	switch Flavour(str(MetaFlavour)) {
	case FlavourGRPC:
		out.Flavour = FlavourGRPC
	case FlavourEnvoy:
		out.Flavour = FlavourEnvoy
	case "gateway":
		out.Flavour, out.Gateway = FlavourEnvoy, true
	}
	// Istio's gateways are "router" nodes: router~IP~POD.NS~NS.svc.DOMAIN.
	if strings.HasPrefix(n.GetId(), "router~") && out.Flavour == FlavourEnvoy {
		out.Gateway = true
	}
	out.Namespace = str(MetaNamespace)
	for _, ip := range strings.Split(str(MetaInstanceIPs), ",") {
		if ip = strings.TrimSpace(ip); ip != "" {
			out.IPs = append(out.IPs, ip)
		}
	}
	if l := md[MetaLabels].GetStructValue(); l != nil {
		out.Labels = map[string]string{}
		for k, v := range l.GetFields() {
			out.Labels[k] = v.GetStringValue()
		}
	}
	out.CertChainPath, out.PrivateKeyPath, out.RootCAPath = str(MetaCertChain), str(MetaPrivateKey), str(MetaRootCA)
	return out
}

func (s *Server) callbacks() serverv3.Callbacks {
	return serverv3.CallbackFuncs{
		StreamOpenFunc: func(ctx context.Context, id int64, _ string) error {
			st := &streamState{sent: map[string]sentResponse{}}
			if s.requireIdentity {
				st.ids, st.idErr = peerIdentities(ctx)
			}
			s.mu.Lock()
			s.streams[id] = st
			s.mu.Unlock()
			return nil
		},
		StreamClosedFunc: func(id int64, _ *corev3.Node) { s.streamClosed(id) },
		StreamRequestFunc: func(id int64, req *discovery.DiscoveryRequest) error {
			return s.streamRequest(id, req)
		},
		StreamResponseFunc: func(_ context.Context, id int64, _ *discovery.DiscoveryRequest, resp *discovery.DiscoveryResponse) {
			s.mu.Lock()
			if st := s.streams[id]; st != nil {
				st.sent[resp.GetTypeUrl()] = sentResponse{nonce: resp.GetNonce(), version: resp.GetVersionInfo()}
			}
			s.mu.Unlock()
			s.metrics.pushes.WithLabelValues(shortType(resp.GetTypeUrl())).Inc()
		},
		DeltaStreamOpenFunc: func(context.Context, int64, string) error {
			return errors.New("meshlens serves state-of-the-world xDS only")
		},
	}
}

func (s *Server) streamRequest(id int64, req *discovery.DiscoveryRequest) error {
	s.mu.Lock()
	st := s.streams[id]
	if st == nil {
		st = &streamState{sent: map[string]sentResponse{}}
		s.streams[id] = st
	}
	newNode := false
	if st.nodeID == "" {
		if req.GetNode().GetId() == "" {
			s.mu.Unlock()
			return errors.New("the first xDS request must carry a node id")
		}
		if s.requireIdentity {
			if err := authenticate(st.ids, st.idErr, req.GetNode()); err != nil {
				s.mu.Unlock()
				s.metrics.authnRefused.Inc()
				s.log.Warn("xds node refused: its identity does not match its claims", "node", req.GetNode().GetId(), "err", err)
				return err
			}
		}
		st.nodeID = req.GetNode().GetId()
		ns := s.nodes[st.nodeID]
		if ns == nil {
			ns = newNodeState(NodeFromProto(req.GetNode()), req.GetNode().GetCluster())
			s.nodes[st.nodeID] = ns
			newNode = true
			s.metrics.connected.Inc()
		}
		ns.streams++
	}
	ns := s.nodes[st.nodeID]
	typ := req.GetTypeUrl()
	ns.subscribed[typ] = true
	if nonce := req.GetResponseNonce(); nonce != "" {
		sent, ok := st.sent[typ]
		if ok && sent.nonce == nonce { // a stale nonce answers a superseded response
			if req.GetErrorDetail() != nil {
				ns.lastNack = &Nack{Version: sent.version, TypeURL: typ, Message: req.GetErrorDetail().GetMessage(), At: time.Now()}
				s.metrics.nacks.WithLabelValues(shortType(typ)).Inc()
				s.log.Warn("xds NACK", "node", st.nodeID, "type", typ, "version", sent.version, "error", req.GetErrorDetail().GetMessage())
				// The request carries the last accepted version, and the cache
				// answers any version mismatch at once: it would resend the
				// rejected resources in a tight loop. Marking the rejected
				// version as the client's makes the cache wait for the next push.
				req.VersionInfo = sent.version
			} else {
				now := time.Now()
				ns.acked[typ] = req.GetVersionInfo()
				ns.ackedAt[typ] = now
				ns.lastAcked = req.GetVersionInfo()
				ns.lastAckAt = now
			}
		}
	}
	nodeID := st.nodeID
	s.mu.Unlock()

	if newNode {
		// Build the node's snapshot before go-control-plane opens the watch,
		// so the very first request is answered at once.
		s.pushMu.Lock()
		version := fmt.Sprintf("%d.%d", s.config.Version, s.push)
		err := s.install(nodeID, version)
		s.pushMu.Unlock()
		if err != nil {
			s.log.Error("xds: no resources for new node", "node", nodeID, "err", err)
		}
	}
	return nil
}

func (s *Server) streamClosed(id int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.streams[id]
	delete(s.streams, id)
	if st == nil || st.nodeID == "" {
		return
	}
	ns := s.nodes[st.nodeID]
	if ns == nil {
		return
	}
	ns.streams--
	if ns.streams <= 0 {
		delete(s.nodes, st.nodeID)
		s.cache.ClearSnapshot(st.nodeID)
		s.metrics.connected.Dec()
	}
}

func shortType(typeURL string) string {
	switch typeURL {
	case resource.ListenerType:
		return "lds"
	case resource.RouteType:
		return "rds"
	case resource.ClusterType:
		return "cds"
	case resource.EndpointType:
		return "eds"
	case resource.SecretType:
		return "sds"
	}
	return typeURL
}

// Proxies reports every connected node, sorted by ID.
func (s *Server) Proxies() []ProxyStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ProxyStatus, 0, len(s.nodes))
	for id, ns := range s.nodes {
		p := ProxyStatus{
			ID: id, Cluster: ns.cluster, Flavour: ns.node.Flavour, ConnectedAt: ns.connectedAt,
			Version: ns.version, LastAckedVersion: ns.lastAcked, LastAckAt: ns.lastAckAt,
			Acked: make(map[string]string, len(ns.acked)), InSync: ns.inSync(),
		}
		for k, v := range ns.acked {
			p.Acked[k] = v
		}
		if ns.lastNack != nil {
			n := *ns.lastNack
			p.LastNack = &n
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b ProxyStatus) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// inSync: every subscribed type has ACKed the installed version of that type.
func (ns *nodeState) inSync() bool {
	if len(ns.subscribed) == 0 || ns.version == "" {
		return false
	}
	for typ := range ns.subscribed {
		if v, ok := ns.typeVersion[typ]; !ok || ns.acked[typ] != v {
			return false
		}
	}
	return true
}

// RegisterRoutes serves GET <group>/proxies (the lead mounts the group at
// /api/v1).
func (s *Server) RegisterRoutes(api *echo.Group) {
	api.GET("/proxies", func(c echo.Context) error {
		return c.JSON(http.StatusOK, s.Proxies())
	})
}

// cacheLogger adapts slog to go-control-plane's logger; its debug chatter
// (one line per watch) stays at debug.
type cacheLogger struct{ l *slog.Logger }

var _ log.Logger = cacheLogger{}

func (c cacheLogger) Debugf(f string, a ...any) { c.l.Debug(fmt.Sprintf(f, a...)) }
func (c cacheLogger) Infof(f string, a ...any)  { c.l.Debug(fmt.Sprintf(f, a...)) }
func (c cacheLogger) Warnf(f string, a ...any)  { c.l.Warn(fmt.Sprintf(f, a...)) }
func (c cacheLogger) Errorf(f string, a ...any) { c.l.Error(fmt.Sprintf(f, a...)) }

// ackedCount counts nodes that have ACKed version of typeURL.
func (s *Server) ackedCount(typeURL, version string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, ns := range s.nodes {
		if ns.acked[typeURL] == version {
			n++
		}
	}
	return n
}

// syncState counts connected nodes and those in sync, and returns when each
// node ACKed version of typeURL (zero time if it has not). Benchmarks poll it.
func (s *Server) syncState(typeURL, version string) (nodes, synced int, ackedAt []time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ns := range s.nodes {
		nodes++
		if ns.inSync() {
			synced++
		}
		if version != "" {
			var at time.Time
			if ns.acked[typeURL] == version {
				at = ns.ackedAt[typeURL]
			}
			ackedAt = append(ackedAt, at)
		}
	}
	return nodes, synced, ackedAt
}
