// Package replicas makes several `meshlens serve` processes answer as one.
//
// Every replica ingests the telemetry a load balancer sends it into its own
// live graph. A read of the live graph (the graph, services, version stats,
// and what the rollout judge and the alert rules read) asks every other
// replica for its live counts over the same window, in parallel, each within
// a timeout, and adds them up: counts and latency histograms add, so the
// merge is exact. A replica that does not answer in time is left out and the
// result is marked partial, naming it. Replicas are found through a static
// list (--peers) or the endpoints of a headless Kubernetes Service
// (--peers-service); each one recognises itself in such a list by the
// instance id every answer carries, so listing every replica everywhere is
// right.
//
// Exactly one replica acts — advances rollouts, evaluates alert rules,
// writes their status to Kubernetes: the holder of a coordination.k8s.io
// Lease (Elector, client-go's leaderelection), or, outside Kubernetes, the
// one replica not started with --follower.
package replicas

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshlens/meshlens/graph"
	"github.com/meshlens/meshlens/internal/recycle"
)

// InstanceHeader carries a replica's instance id on every answer to a peer,
// so that a replica finding its own address among its peers skips it.
const InstanceHeader = "Meshlens-Instance"

// TimeHeader carries the answering replica's clock (its live graph's, Unix
// nanoseconds) on every answer to a peer, for the asker to see how far the
// two clocks disagree.
const TimeHeader = "Meshlens-Time"

// DefaultMaxClockSkew is Options.MaxClockSkew's default.
const DefaultMaxClockSkew = 5 * time.Second

// Options tune the replicas.
type Options struct {
	// Peers lists the HTTP addresses (host:port) of the replicas; it may
	// include this one. Called on every merged read.
	Peers func() []string
	// Self are addresses known to be this replica's (--advertise), skipped
	// without asking; others of its are found by the instance id.
	Self []string
	// Timeout bounds one peer's answer; default 1 s.
	Timeout time.Duration
	// Token is presented to peers (auth.Authorizer.PeerToken).
	Token string
	// Client is the HTTP client for peers; default one of this package's.
	// Unused with TLS.
	Client *http.Client
	// TLS, when set, makes peers read over HTTPS (meshlens serving TLS).
	TLS *TLSOptions
	// MaxClockSkew is how far a peer's clock may be from this replica's
	// before its live counts are left out of merged reads (--peer-max-clock-skew;
	// 0 means DefaultMaxClockSkew, a negative value never leaves one out).
	// A live graph buckets records at their own timestamps but takes its
	// clock as the present: a replica whose clock is behind counts fresh
	// records at its "now", earlier than they happened (a window loses up to
	// the skew's share of that replica's traffic), one ahead recycles its
	// buckets early. Within the bound a merged read asks every replica for
	// the asker's window and is exact; beyond it the peer is named in the
	// missing list with its offset, as one that did not answer.
	MaxClockSkew time.Duration
}

// Replicas is this replica's view of all of them: its own live graph plus
// what its peers answer.
type Replicas struct {
	live   *graph.Live
	opts   Options
	client *peerClient
	id     string
	logger *slog.Logger

	bodies recycle.List[*bytes.Buffer] // peers' answers' buffers (get, putBody)

	mu     sync.Mutex
	self   map[string]bool // addresses found to be this replica
	status map[string]PeerStatus

	leader   func() string
	isLeader func() bool

	fetches  *prometheus.CounterVec
	duration prometheus.Histogram
	offsets  *prometheus.GaugeVec
}

// PeerStatus is what the last read of a peer found.
type PeerStatus struct {
	Address  string    `json:"address"`
	Instance string    `json:"instance,omitempty"`
	OK       bool      `json:"ok"`
	Error    string    `json:"error,omitempty"`
	At       time.Time `json:"at"`
	Millis   float64   `json:"millis"`
	// ClockOffsetMs is how far the peer's clock was ahead of this replica's
	// (negative: behind), less than half the read's round trip off; absent
	// when the peer did not say (it did not answer, or is an older meshlens).
	ClockOffsetMs *float64 `json:"clockOffsetMs,omitempty"`
}

// Missing names a peer whose traffic a merged read lacks, and why.
type Missing = graph.MissingReplica

// New builds the replicas view over live and registers its metrics.
func New(live *graph.Live, opts Options, logger *slog.Logger, reg prometheus.Registerer) (*Replicas, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = time.Second
	}
	if opts.Peers == nil {
		opts.Peers = func() []string { return nil }
	}
	if opts.MaxClockSkew == 0 {
		opts.MaxClockSkew = DefaultMaxClockSkew
	}
	client, err := newPeerClient(opts.Client, opts.TLS)
	if err != nil {
		return nil, fmt.Errorf("replicas: %w", err)
	}
	raw := make([]byte, 8)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	r := &Replicas{live: live, opts: opts, client: client, id: hex.EncodeToString(raw), logger: logger,
		self: map[string]bool{}, status: map[string]PeerStatus{},
		fetches: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshlens_replica_peer_reads_total",
			Help: "Reads of another replica's live graph, by result (ok, error, timeout, clock_skew)."}, []string{"result"}),
		offsets: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "meshlens_replica_peer_clock_offset_seconds",
			Help: "How far each peer's clock was ahead of this replica's (negative: behind) at its last read."}, []string{"peer"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "meshlens_replica_peer_read_seconds",
			Help: "How long reading another replica's live graph took.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 12)}),
	}
	for _, a := range opts.Self {
		r.self[a] = true
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{r.fetches, r.duration, r.offsets} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("replicas: register metrics: %w", err)
			}
		}
	}
	return r, nil
}

// SetLeader tells the replicas view who leads (Elector.Leader, IsLeader),
// for GET /api/v1/replicas.
func (r *Replicas) SetLeader(leader func() string, isLeader func() bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.leader, r.isLeader = leader, isLeader
}

// View is GET /api/v1/replicas: this replica and what it knows of the others.
type View struct {
	Instance string       `json:"instance"`
	Leader   string       `json:"leader,omitempty"`
	IsLeader bool         `json:"isLeader"`
	Election bool         `json:"election"`
	Peers    []PeerStatus `json:"peers"`
}

// ID is this replica's instance id, new at every start.
func (r *Replicas) ID() string { return r.id }

// Live is this replica's own live graph.
func (r *Replicas) Live() *graph.Live { return r.live }

// MaxWindow is the longest window the live graphs answer.
func (r *Replicas) MaxWindow() time.Duration { return r.live.MaxWindow() }

// peers are the addresses to ask: the configured ones, without this
// replica's own.
func (r *Replicas) peers() []string {
	all := r.opts.Peers()
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(all))
	for _, p := range all {
		if p != "" && !r.self[p] && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// forget drops what is known of addresses that are no longer peers (pods
// come and go), so their status and clock gauge do not pile up.
func (r *Replicas) forget(peers []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for a := range r.status {
		if !slices.Contains(peers, a) {
			delete(r.status, a)
			r.offsets.DeleteLabelValues(a)
		}
	}
}

// errSelf: the address is this replica's.
var errSelf = errors.New("this replica")

const skewPrefix = "clock "

// skewError names a peer's clock offset that is beyond the bound.
func skewError(offset, bound time.Duration) error {
	dir := "ahead of"
	if offset < 0 {
		dir = "behind"
	}
	return fmt.Errorf("%s%v %s this replica's, more than the %v allowed (--peer-max-clock-skew): its live counts would be misplaced in time",
		skewPrefix, offset.Abs().Round(100*time.Millisecond), dir, bound)
}

// fetch reads path from every peer in parallel; each answer's body goes to
// use (called one at a time; the bytes are reused once it returns). It
// returns the peers that did not answer.
func (r *Replicas) fetch(ctx context.Context, path string, q url.Values, use func(peer string, body []byte) error) []Missing {
	peers := r.peers()
	r.forget(peers)
	if len(peers) == 0 {
		return nil
	}
	type answer struct {
		peer, inst string
		body       *bytes.Buffer
		err        error
	}
	ch := make(chan answer, len(peers))
	for _, p := range peers {
		go func() {
			body, inst, err := r.get(ctx, p, path, q)
			ch <- answer{p, inst, body, err}
		}()
	}
	var missing []Missing
	seen := map[string]bool{}
	for range peers {
		a := <-ch
		if a.err == nil {
			// Two addresses of one replica: count it once.
			if !seen[a.inst] {
				seen[a.inst] = true
				a.err = use(a.peer, a.body.Bytes())
			}
			r.putBody(a.body)
		}
		switch {
		case errors.Is(a.err, errSelf):
		case a.err != nil:
			missing = append(missing, Missing{Replica: a.peer, Error: a.err.Error()})
		}
	}
	slices.SortFunc(missing, func(a, b Missing) int {
		if a.Replica < b.Replica {
			return -1
		}
		return 1
	})
	return missing
}

// get reads one peer: its answer's body, in a buffer of the pool (putBody),
// and its instance id.
func (r *Replicas) get(ctx context.Context, peer, path string, q url.Values) (*bytes.Buffer, string, error) {
	start := time.Now()
	clockStart := r.live.Now()
	ctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	body, inst, peerTime, err := r.do(ctx, peer, path, q)
	took := time.Since(start)
	ms := float64(took.Microseconds()) / 1000
	r.duration.Observe(took.Seconds())
	st := PeerStatus{Address: peer, Instance: inst, OK: err == nil, At: start.UTC(), Millis: ms}
	var skewErr error
	if !peerTime.IsZero() && inst != r.id {
		// The peer read its clock somewhere within the round trip: against
		// its middle, the offset is off by at most half of it.
		offset := peerTime.Sub(clockStart.Add(took / 2))
		off := float64(offset.Microseconds()) / 1000
		st.ClockOffsetMs = &off
		r.offsets.WithLabelValues(peer).Set(offset.Seconds())
		if bound := r.opts.MaxClockSkew; bound > 0 && offset.Abs() > bound+took/2 {
			skewErr = skewError(offset, bound)
		}
	}
	switch {
	case inst == r.id:
		r.mu.Lock()
		r.self[peer] = true
		delete(r.status, peer)
		r.mu.Unlock()
		r.offsets.DeleteLabelValues(peer)
		r.putBody(body)
		return nil, "", errSelf
	case err == nil && skewErr != nil:
		err = skewErr
		r.fetches.WithLabelValues("clock_skew").Inc()
	case err == nil:
		r.fetches.WithLabelValues("ok").Inc()
	case ctx.Err() != nil:
		err = fmt.Errorf("no answer within %v", r.opts.Timeout)
		r.fetches.WithLabelValues("timeout").Inc()
	default:
		r.fetches.WithLabelValues("error").Inc()
	}
	if err != nil {
		st.OK = false
		st.Error = err.Error()
		r.logger.Debug("replica did not answer; the merged result is partial", "peer", peer, "err", err)
	}
	r.mu.Lock()
	prev := r.status[peer]
	r.status[peer] = st
	r.mu.Unlock()
	if wasSkewed := strings.HasPrefix(prev.Error, skewPrefix); (skewErr != nil) != wasSkewed {
		// Said when it starts and when it ends, not at every read.
		if skewErr != nil {
			r.logger.Warn("a peer's clock is too far from this replica's: its live counts are left out of merged reads",
				"peer", peer, "offset", time.Duration(*st.ClockOffsetMs*float64(time.Millisecond)).String(), "max", r.opts.MaxClockSkew.String())
		} else {
			r.logger.Info("a peer's clock agrees with this replica's again: its live counts are merged", "peer", peer)
		}
	}
	if err != nil {
		r.putBody(body)
		return nil, "", err
	}
	if len(inst) != 16 {
		r.putBody(body)
		return nil, "", fmt.Errorf("answer without a meshlens instance id")
	}
	return body, inst, nil
}

// maxPooledBody bounds the answer buffers kept for the next read.
const maxPooledBody = 16 << 20

// body is a buffer to read a peer's answer into: a merged graph reads
// about a megabyte from each peer, every query.
func (r *Replicas) body() *bytes.Buffer {
	if b, ok := r.bodies.Get(); ok {
		b.Reset()
		return b
	}
	return new(bytes.Buffer)
}

// putBody gives a buffer back once nothing reads it (nil: nothing to give).
func (r *Replicas) putBody(b *bytes.Buffer) {
	if b != nil && b.Cap() <= maxPooledBody {
		r.bodies.Put(b)
	}
}

// do reads one peer: the body (with an error, nil or to be given back),
// its instance id and its clock (zero when it did not say).
func (r *Replicas) do(ctx context.Context, peer, path string, q url.Values) (*bytes.Buffer, string, time.Time, error) {
	client, cerr := r.client.get(time.Now())
	if cerr != nil {
		r.logger.Error("the peers' CA changed but does not load; verifying with the previous one", "err", cerr)
	}
	u := r.client.scheme() + "://" + peer + path + "?" + q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, "", time.Time{}, err
	}
	req.Header.Set(InstanceHeader, r.id)
	if r.opts.Token != "" {
		req.Header.Set("Authorization", "Bearer "+r.opts.Token)
	}
	resp, err := client.Do(req)
	if ue := (*url.Error)(nil); errors.As(err, &ue) {
		err = ue.Err // the peer is named beside it; the why is what is left
	}
	if err != nil {
		return nil, "", time.Time{}, err
	}
	defer resp.Body.Close()
	inst := resp.Header.Get(InstanceHeader)
	var peerTime time.Time
	if ns, err := strconv.ParseInt(resp.Header.Get(TimeHeader), 10, 64); err == nil {
		peerTime = time.Unix(0, ns)
	}
	buf := r.body()
	if n := resp.ContentLength; n > 0 && n <= maxAnswer {
		buf.Grow(int(n) + 1) // read at once, not by doubling
	}
	_, err = buf.ReadFrom(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return buf, inst, peerTime, err
	}
	if resp.StatusCode != http.StatusOK {
		body := buf.Bytes()
		if len(body) > 300 {
			body = body[:300]
		}
		return buf, inst, peerTime, fmt.Errorf("%s: %s", resp.Status, body)
	}
	return buf, inst, peerTime, nil
}

// maxAnswer bounds a peer's answer.
const maxAnswer = 256 << 20

// TrafficAt is the live traffic of every replica over the window ending at
// end, added up, and the replicas left out. Partial is set when any is. The
// traffic lists its edges only (graph.Listed adds the Edges map); it may be
// shared: callers must not modify it.
func (r *Replicas) TrafficAt(ctx context.Context, end time.Time, window time.Duration) (*graph.Traffic, []Missing, error) {
	return r.trafficAt(ctx, end, window, false)
}

// trafficAt reads the published snapshots, as a single replica's graph
// does (they lag the records by at most a second and their sums are shared
// by readers), or, fresh, snapshots up to the last record.
func (r *Replicas) trafficAt(ctx context.Context, end time.Time, window time.Duration, fresh bool) (*graph.Traffic, []Missing, error) {
	snap := snapshot(r.live, fresh)
	if len(r.opts.Peers()) == 0 {
		local, err := snap.TrafficList(end, window)
		return local, nil, err
	}
	// This replica's own sum is made and merged while the peers are asked:
	// the asker's cores are idle while it waits for them.
	m := r.live.NewMerger(end, window)
	var mu sync.Mutex // the merger, between the local sum and the answers
	localErr := make(chan error, 1)
	go func() {
		sums, err := snap.Sums(end, window)
		if err == nil {
			mu.Lock()
			m.AddSums(sums)
			mu.Unlock()
		}
		localErr <- err
	}()
	q := url.Values{"window": {window.String()}, "end": {strconv.FormatInt(end.UnixNano(), 10)}}
	if fresh {
		q.Set("fresh", "true")
	}
	missing := r.fetch(ctx, trafficPath, q, func(_ string, body []byte) error {
		mu.Lock()
		defer mu.Unlock()
		return m.AddWire(body)
	})
	if err := <-localErr; err != nil {
		return nil, nil, err
	}
	if len(missing) > 0 {
		m.SetPartial()
	}
	return m.Traffic(), missing, nil
}

// VersionSum is the inbound traffic of one version over the window ending
// now on every replica, added up.
func (r *Replicas) VersionSum(ctx context.Context, ns, service, version string, window time.Duration) (graph.VersionSum, []Missing, error) {
	sum, err := r.live.Refresh().VersionSum(ns, service, version, window)
	if err != nil {
		return sum, nil, err
	}
	sum.Latency = slices.Clone(sum.Latency)
	q := url.Values{"window": {window.String()}}
	missing := r.fetch(ctx, versionPath(ns, service, version), q, func(_ string, body []byte) error {
		var o graph.VersionSum
		if err := json.Unmarshal(body, &o); err != nil {
			return err
		}
		sum.Add(o)
		return nil
	})
	return sum, missing, nil
}

// CurrentVersionStats is what the rollout judge reads: the version's stats
// over all replicas. A replica left out is logged; the verdict goes on with
// the traffic that is known (the judge needs enough samples anyway).
func (r *Replicas) CurrentVersionStats(ctx context.Context, ns, service, version string, window time.Duration) (graph.VersionStats, error) {
	sum, missing, err := r.VersionSum(ctx, ns, service, version, window)
	if err != nil {
		return graph.VersionStats{}, err
	}
	if len(missing) > 0 {
		r.logger.Warn("version stats without some replicas", "service", ns+"/"+service, "version", version, "missing", missing)
	}
	return sum.Stats(window), nil
}

// TrafficNow is what alert rules read: TrafficAt, with the Edges map, a
// replica left out logged.
func (r *Replicas) TrafficNow(ctx context.Context, end time.Time, window time.Duration) (*graph.Traffic, error) {
	t, missing, err := r.trafficAt(ctx, end, window, true)
	if len(missing) > 0 {
		r.logger.Warn("alert rules read the traffic without some replicas", "missing", missing)
	}
	if err != nil {
		return nil, err
	}
	return graph.Listed(t), nil
}

// ServiceSeries is the per-version series of a service's inbound traffic
// over the range ending at end on every replica, added up step by step (the
// steps are whole buckets of the clock, the same on every replica), and
// the replicas left out.
func (r *Replicas) ServiceSeries(ctx context.Context, ns, service string, end time.Time, rng time.Duration, maxPoints int) ([]graph.Series, time.Duration, []Missing, error) {
	sb, err := r.live.Snapshot().ServiceSeriesAt(ns, service, end, rng, maxPoints)
	if err != nil {
		return nil, 0, nil, err
	}
	q := url.Values{"range": {rng.String()}, "end": {strconv.FormatInt(end.UnixNano(), 10)}, "points": {strconv.Itoa(maxPoints)}}
	missing := r.fetch(ctx, seriesPath(ns, service), q, func(_ string, body []byte) error {
		var o graph.SeriesSums
		if err := json.Unmarshal(body, &o); err != nil {
			return fmt.Errorf("series: %w", err)
		}
		sb.AddSums(o)
		return nil
	})
	return sb.Series(), sb.Step, missing, nil
}

// Read asks every other replica for path, a route served with PeerRoute,
// in parallel, each within the timeout, and hands each answer's body to use
// (one at a time; the bytes are reused once use returns, so use keeps
// none of them); it returns the replicas that did not answer.
func (r *Replicas) Read(ctx context.Context, path string, q url.Values, use func(peer string, body []byte) error) []Missing {
	return r.fetch(ctx, path, q, use)
}

// PeerRoute serves on g a route other replicas Read: the answer carries
// this replica's instance id, and a replica reading itself (its address in
// its own peers) gets nothing and skips it.
func (r *Replicas) PeerRoute(g *echo.Group, path string, h echo.HandlerFunc) {
	g.GET(path, func(c echo.Context) error {
		r.stamp(c)
		if c.Request().Header.Get(InstanceHeader) == r.id {
			return c.NoContent(http.StatusOK)
		}
		return h(c)
	})
}

// Status lists the peers as last read.
func (r *Replicas) Status() []PeerStatus {
	peers := r.peers()
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]PeerStatus, 0, len(peers))
	for _, p := range peers {
		st, ok := r.status[p]
		if !ok {
			st = PeerStatus{Address: p}
		}
		out = append(out, st)
	}
	return out
}

const trafficPath = "/api/v1/replica/traffic"

func versionPath(ns, service, version string) string {
	return "/api/v1/replica/versions/" + url.PathEscape(ns) + "/" + url.PathEscape(service) + "/" + url.PathEscape(version)
}

func seriesPath(ns, service string) string {
	return "/api/v1/replica/series/" + url.PathEscape(ns) + "/" + url.PathEscape(service)
}

// RegisterRoutes adds what peers read to g, the /api/v1 group: this
// replica's own live traffic (wire form), version sums and service series.
func (r *Replicas) RegisterRoutes(g *echo.Group) {
	g.GET("/replicas", r.getReplicas)
	g.GET("/replica/traffic", r.getTraffic)
	g.GET("/replica/versions/:ns/:name/:version", r.getVersion)
	r.PeerRoute(g, "/replica/series/:ns/:name", r.getSeries)
}

func (r *Replicas) getSeries(c echo.Context) error {
	bad := func(param, msg string) error {
		return c.JSON(http.StatusBadRequest, map[string]string{"error": param + ": " + msg, "parameter": param})
	}
	rng, err := time.ParseDuration(c.QueryParam("range"))
	if err != nil || rng <= 0 {
		return bad("range", "want a positive duration")
	}
	end, err := strconv.ParseInt(c.QueryParam("end"), 10, 64)
	if err != nil {
		return bad("end", "want unix nanoseconds")
	}
	points, err := strconv.Atoi(c.QueryParam("points"))
	if err != nil || points < 1 || points > 10000 {
		return bad("points", "want 1 to 10000")
	}
	sb, err := r.live.Snapshot().ServiceSeriesAt(unescape(c.Param("ns")), unescape(c.Param("name")), time.Unix(0, end), rng, points)
	if err != nil {
		return bad("range", err.Error())
	}
	return c.JSON(http.StatusOK, sb.Sums())
}

func (r *Replicas) getReplicas(c echo.Context) error {
	v := View{Instance: r.id, Peers: r.Status()}
	r.mu.Lock()
	leader, isLeader := r.leader, r.isLeader
	r.mu.Unlock()
	if leader != nil {
		v.Election, v.Leader, v.IsLeader = true, leader(), isLeader()
	}
	return c.JSON(http.StatusOK, v)
}

func (r *Replicas) window(c echo.Context) (time.Duration, error) {
	w, err := time.ParseDuration(c.QueryParam("window"))
	if err != nil || w <= 0 {
		return 0, fmt.Errorf("window %q: want a positive duration", c.QueryParam("window"))
	}
	return w, nil
}

// stamp marks an answer to a peer with this replica's instance id and clock.
func (r *Replicas) stamp(c echo.Context) {
	h := c.Response().Header()
	h.Set(InstanceHeader, r.id)
	h.Set(TimeHeader, strconv.FormatInt(r.live.Now().UnixNano(), 10))
}

func (r *Replicas) getTraffic(c echo.Context) error {
	r.stamp(c)
	w, err := r.window(c)
	if err != nil {
		return c.JSON(http.StatusBadRequest, map[string]string{"error": err.Error(), "parameter": "window"})
	}
	end := time.Now()
	if s := c.QueryParam("end"); s != "" {
		ns, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return c.JSON(http.StatusBadRequest, map[string]string{"error": "end: want unix nanoseconds", "parameter": "end"})
		}
		end = time.Unix(0, ns)
	}
	if c.Request().Header.Get(InstanceHeader) == r.id {
		return c.NoContent(http.StatusOK) // the caller is this replica: it skips it
	}
	// Shared by every peer that asks within the snapshot's interval, and
	// its memory the next snapshot's once written.
	var used bool
	err = snapshot(r.live, c.QueryParam("fresh") == "true").UseTrafficWire(end, w, func(wire []byte) error {
		used = true
		// With its length, the asker reads the answer into one buffer.
		c.Response().Header().Set(echo.HeaderContentLength, strconv.Itoa(len(wire)))
		return c.Blob(http.StatusOK, graph.TrafficContentType, wire)
	})
	if err != nil && !used {
		return c.JSON(http.StatusBadRequest, map[string]string{"error": err.Error(), "parameter": "window"})
	}
	return err
}

func (r *Replicas) getVersion(c echo.Context) error {
	r.stamp(c)
	w, err := r.window(c)
	if err != nil {
		return c.JSON(http.StatusBadRequest, map[string]string{"error": err.Error(), "parameter": "window"})
	}
	if c.Request().Header.Get(InstanceHeader) == r.id {
		return c.NoContent(http.StatusOK)
	}
	sum, err := r.live.Refresh().VersionSum(unescape(c.Param("ns")), unescape(c.Param("name")), unescape(c.Param("version")), w)
	if err != nil {
		return c.JSON(http.StatusBadRequest, map[string]string{"error": err.Error(), "parameter": "window"})
	}
	return c.JSON(http.StatusOK, sum)
}

func snapshot(l *graph.Live, fresh bool) *graph.Snapshot {
	if fresh {
		return l.Refresh()
	}
	return l.Snapshot()
}

func unescape(s string) string {
	if u, err := url.PathUnescape(s); err == nil {
		return u
	}
	return s
}
