package istiometrics

import (
	"sync/atomic"
	"time"

	"github.com/meshlens/meshlens/mesh"
)

// nBuckets is the number of finite buckets of every histogram: Istio's,
// which are Envoy's default bounds (mesh.LatencyBucketsMs).
const nBuckets = 19

// Bounds of the histograms in the units observed: microseconds for
// durations (exposed in milliseconds, with microsecond precision), bytes for
// sizes. Istio's byte histograms have the same bounds as its duration
// histogram, 0.5 included: a whole number of bytes is at most 0.5 when it
// is 0.
var durationBoundsUs, bytesBounds = func() (us, b [nBuckets]uint64) {
	if len(mesh.LatencyBucketsMs) != nBuckets {
		panic("istiometrics: mesh.LatencyBucketsMs changed: update nBuckets")
	}
	for i, ms := range mesh.LatencyBucketsMs {
		us[i] = uint64(ms * 1000)
		b[i] = uint64(ms)
	}
	return us, b
}()

// histogram counts observations per bucket (not cumulative; the last one is
// +Inf) and their sum, in the unit observed.
type histogram struct {
	buckets [nBuckets + 1]atomic.Uint64
	sum     atomic.Uint64
}

func (h *histogram) observe(v uint64, bounds *[nBuckets]uint64) {
	i := 0
	for i < nBuckets && v > bounds[i] {
		i++
	}
	h.buckets[i].Add(1)
	h.sum.Add(v)
}

// httpCounts are the counts of one HTTP/gRPC destination series.
type httpCounts struct {
	requests                              atomic.Uint64
	duration, requestBytes, responseBytes histogram
}

// tcpCounts are the counts of one TCP destination series.
type tcpCounts struct {
	opened, closed, sent, received atomic.Uint64
}

// mode holds the counts of one connection security policy of a label set:
// mTLS or not. Istio's source reports do not know it (their
// connection_security_policy is "unknown"), so a label set's source series
// is the sum of its modes.
type mode[C any] struct {
	published atomic.Bool // exposed at zero once
	c         C
}

// series is a label set but for the connection security policy: up to two
// destination series (mutual_tls, none) and one source series.
type series[K any, C any] struct {
	key      K      // canonical: exactly what the labels show
	fqdn     string // destination_service
	code     string // response_code
	grpc     string // grpc_response_status
	modes    [2]atomic.Pointer[mode[C]]
	lastSeen int64 // ns; under Exporter.mu
	idx      int   // in family.list; under Exporter.mu
	dead     bool  // under Exporter.mu
}

// exported is how many series of each metric s makes.
func exported[K key[K], C any](s *series[K, C]) int {
	n := 0
	for i := range s.modes {
		if s.modes[i].Load() != nil {
			n++
		}
	}
	if n > 0 && s.key.sourceKnown() {
		n++
	}
	return n
}

// key is what tells the series of a family apart, mTLS aside.
type key[K any] interface {
	comparable
	// canonical is the key of the labels k will have.
	canonical(c *cleaner) K
	// longest is the length of k's longest string.
	longest() int
	// clone copies k's strings.
	clone() K
	sourceKnown() bool
	// derived are the label values computed from the key.
	derived(domainSuffix string) (fqdn, code, grpc string)
}

// httpKey tells HTTP and gRPC series apart.
type httpKey struct {
	src, dst mesh.Peer
	protocol string
	flags    string
	code     uint16
	grpc     int16
}

func (k httpKey) canonical(c *cleaner) httpKey {
	k.src, k.dst = canonicalPeer(k.src, c), canonicalPeer(k.dst, c)
	if k.protocol = c.clean(k.protocol); k.protocol == "" {
		k.protocol = "http"
	}
	if k.flags = c.clean(k.flags); k.flags == "" {
		k.flags = "-"
	}
	if k.grpc < 0 {
		k.grpc = -1
	}
	return k
}

func (k httpKey) longest() int {
	return max(longestPeer(&k.src), longestPeer(&k.dst), len(k.protocol), len(k.flags))
}

func (k httpKey) clone() httpKey {
	k.src, k.dst, k.protocol, k.flags = clonePeer(k.src), clonePeer(k.dst), clone(k.protocol), clone(k.flags)
	return k
}

func (k httpKey) sourceKnown() bool { return known(&k.src) }

func (k httpKey) derived(suffix string) (fqdn, code, grpc string) {
	return serviceFQDN(&k.dst, suffix), codeLabel(k.code), grpcLabel(k.grpc)
}

// tcpKey tells TCP series apart.
type tcpKey struct {
	src, dst mesh.Peer
	flags    string
}

func (k tcpKey) canonical(c *cleaner) tcpKey {
	k.src, k.dst = canonicalPeer(k.src, c), canonicalPeer(k.dst, c)
	if k.flags = c.clean(k.flags); k.flags == "" {
		k.flags = "-"
	}
	return k
}

func (k tcpKey) longest() int { return max(longestPeer(&k.src), longestPeer(&k.dst), len(k.flags)) }

func (k tcpKey) clone() tcpKey {
	k.src, k.dst, k.flags = clonePeer(k.src), clonePeer(k.dst), clone(k.flags)
	return k
}

func (k tcpKey) sourceKnown() bool { return known(&k.src) }

func (k tcpKey) derived(suffix string) (fqdn, code, grpc string) {
	return serviceFQDN(&k.dst, suffix), "", ""
}

func longestPeer(p *mesh.Peer) int {
	return max(len(p.Namespace), len(p.Service), len(p.Workload), len(p.Version))
}

func clonePeer(p mesh.Peer) mesh.Peer {
	return mesh.Peer{Namespace: clone(p.Namespace), Service: clone(p.Service), Workload: clone(p.Workload), Version: clone(p.Version)}
}

// clone copies s, so that a series never keeps a record's buffer alive.
func clone(s string) string {
	switch s {
	case "", vUnknown, "-", "http", "grpc":
		return s
	}
	return string([]byte(s))
}

// family is the series of Istio's HTTP metrics, or of its TCP metrics: the
// metrics of a family share their label sets.
type family[K key[K], C any] struct {
	keys    map[K]*series[K, C]    // canonical keys, and raw keys whose labels they are
	dirty   map[K]dirtyAlias[K, C] // raw keys whose label values had to be sanitised
	list    []*series[K, C]
	count   int // series of each metric of the family
	aliases int // raw keys in keys and dirty
}

// dirtyAlias is the series of a raw key whose label values had to be
// sanitised, and how many of them.
type dirtyAlias[K any, C any] struct {
	s                    *series[K, C]
	invalidUTF8, tooLong int
}

func (f *family[K, C]) init() {
	f.keys = map[K]*series[K, C]{}
	f.dirty = map[K]dirtyAlias[K, C]{}
}

// maxAliasBytes bounds the raw strings a key kept as an alias may have;
// longer ones are cleaned again on every record rather than kept.
const maxAliasBytes = 1024

// newSeries finds or creates the series of raw key k (with room for its
// first mode); nil when the series limit leaves none.
func newSeries[K key[K], C any](x *Exporter, f *family[K, C], k K, now int64, st *ingestStats) *series[K, C] {
	var c cleaner
	ck := k.canonical(&c)
	st.sanitized(c.invalidUTF8, c.tooLong)
	s := f.keys[ck]
	if s == nil {
		if !x.room(&f.count, 1+b2i(ck.sourceKnown()), now) {
			st.dropped++
			return nil
		}
		s = &series[K, C]{key: ck.clone(), idx: len(f.list), lastSeen: now}
		s.fqdn, s.code, s.grpc = s.key.derived(x.cfg.DomainSuffix)
		f.list = append(f.list, s)
		f.keys[s.key] = s
	}
	// Remember k as another name of the series, within bounds.
	if k != ck && f.aliases < x.cfg.MaxSeries && k.longest() <= maxAliasBytes {
		f.aliases++
		if c.changed() {
			f.dirty[k.clone()] = dirtyAlias[K, C]{s, c.invalidUTF8, c.tooLong}
		} else {
			f.keys[k.clone()] = s
		}
	}
	return s
}

// addMode adds the counts of an mTLS mode to s; nil when the series limit
// leaves no room for it.
func addMode[K key[K], C any](x *Exporter, f *family[K, C], s *series[K, C], mtls bool, now int64, st *ingestStats) *mode[C] {
	need := exported(s)
	if need == 0 {
		need = 1 + b2i(s.key.sourceKnown())
	} else {
		need = 1
	}
	if !x.room(&f.count, need, now) {
		st.dropped++
		return nil
	}
	f.count += need
	m := &mode[C]{}
	s.modes[b2i(mtls)].Store(m)
	return m
}

// forcedSweepEvery bounds how often the series limit forces a sweep.
const forcedSweepEvery = time.Second

// room reports whether a family of *count series has room for need more,
// expiring what is due first when it has not.
func (x *Exporter) room(count *int, need int, now int64) bool {
	if *count+need <= x.cfg.MaxSeries {
		return true
	}
	if now < x.nextForcedSweep {
		return false
	}
	x.nextForcedSweep = now + int64(forcedSweepEvery)
	x.sweepLocked(now)
	return *count+need <= x.cfg.MaxSeries
}

// sweepLocked removes the series not updated for the expiry.
func (x *Exporter) sweepLocked(now int64) {
	every := max(x.expiry/10, int64(time.Second))
	x.nextSweep = now + every
	n := sweep(&x.http, now-x.expiry) + sweep(&x.tcp, now-x.expiry)
	if n > 0 {
		x.m.expired.Add(float64(n))
	}
}

func sweep[K key[K], C any](f *family[K, C], cutoff int64) int {
	n := 0
	for i := 0; i < len(f.list); {
		s := f.list[i]
		if s.lastSeen >= cutoff {
			i++
			continue
		}
		s.dead = true
		f.count -= exported(s)
		last := len(f.list) - 1
		f.list[i] = f.list[last]
		f.list[i].idx = i
		f.list[last] = nil
		f.list = f.list[:last]
		n++
	}
	if n == 0 {
		return 0
	}
	for k, s := range f.keys {
		if s.dead {
			if k != s.key {
				f.aliases--
			}
			delete(f.keys, k)
		}
	}
	for k, a := range f.dirty {
		if a.s.dead {
			f.aliases--
			delete(f.dirty, k)
		}
	}
	return n
}

// snapshot returns the live series, for a scrape.
func (f *family[K, C]) snapshot() []*series[K, C] {
	return append([]*series[K, C](nil), f.list...)
}
