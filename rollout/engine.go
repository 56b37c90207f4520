package rollout

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	networking "istio.io/api/networking/v1"

	"github.com/meshlens/meshlens/controlplane/config"
	"github.com/meshlens/meshlens/graph"
	"github.com/meshlens/meshlens/internal/atomicfile"
)

// StateFile is the file, under the data dir, holding rollout state.
const StateFile = "rollouts.json"

// MaxHistory bounds a rollout's history; the oldest verdicts go first.
const MaxHistory = 500

var (
	// ErrNotFound: no such rollout.
	ErrNotFound = errors.New("rollout not found")
	// ErrTransition: the state machine does not allow the event now.
	ErrTransition = errors.New("transition not allowed")
	// ErrNotLeader: another meshlens replica runs the rollouts.
	ErrNotLeader = errors.New("this meshlens replica does not run rollouts")
)

// Mirror keeps rollout state outside the data dir, where another meshlens
// replica finds it when it takes over: the Rollout objects' status in
// Kubernetes (controlplane/kube.StatusWriter).
type Mirror interface {
	// SaveRollout writes one rollout's state; it is called, before its
	// routes are written, whenever the state changed.
	SaveRollout(ctx context.Context, st Status) error
}

// Stats is where verdicts read live per-version numbers, up to the last
// record: *graph.Live, or the live graphs of every meshlens replica added
// up (replicas.Replicas).
type Stats interface {
	CurrentVersionStats(ctx context.Context, ns, service, version string, window time.Duration) (graph.VersionStats, error)
	MaxWindow() time.Duration
}

// Options tune the engine. Zero values take the defaults.
type Options struct {
	// DataDir holds StateFile. Required.
	DataDir string
	// Tick is how often the engine looks at its rollouts; each is judged at
	// its own analysis interval. Default 1s.
	Tick time.Duration
	// DomainSuffix must match the config store's and the xDS translator's.
	DomainSuffix string
	// Now is the clock; default time.Now.
	Now func() time.Time
	// TrafficProvider is the provider of rollouts that name none
	// (spec.trafficProvider); default ProviderMeshlens.
	TrafficProvider string
	// Traffic holds the providers other than meshlens (istio, gatewayAPI),
	// which need the Kubernetes cluster (controlplane/kube).
	Traffic map[string]Traffic
	// Mirror, if set, also gets the state of every rollout that changed.
	Mirror Mirror
	// Audit, if set, is told of every transition and every push of routes
	// that changed them (Entry.Type "push"), with the ctx of the call that
	// made it (an operator's request names who). It must not block.
	Audit func(ctx context.Context, namespace, name string, transition Entry)
}

// Status is everything known about one rollout: what the API shows and
// what survives a restart.
type Status struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Service   string `json:"service"`
	Strategy  string `json:"strategy"`
	// Stable and Candidate are subsets; the versions are the labels the
	// live graph knows them by.
	Stable           string   `json:"stable"`
	Candidate        string   `json:"candidate"`
	StableVersion    string   `json:"stableVersion"`
	CandidateVersion string   `json:"candidateVersion"`
	State            State    `json:"state"`
	Step             int      `json:"step"`
	Steps            []int32  `json:"steps,omitempty"`
	Weights          Weights  `json:"weights"`
	Applied          *Weights `json:"applied,omitempty"` // last weights the provider accepted
	// Provider is the traffic provider the rollout writes through.
	Provider       string `json:"provider,omitempty"`
	VirtualService string `json:"virtualService"`
	HTTPRoute      string `json:"httpRoute,omitempty"`
	// RoutesEdited: someone else changed the routes since the rollout
	// wrote them; nothing is written until an operator (or an alert)
	// decides.
	RoutesEdited  bool        `json:"routesEdited,omitempty"`
	Conditions    []Condition `json:"conditions,omitempty"`
	StartedAt     time.Time   `json:"startedAt"`
	StepStartedAt time.Time   `json:"stepStartedAt"`
	UpdatedAt     time.Time   `json:"updatedAt"`
	Message       string      `json:"message,omitempty"`
	Failures      int         `json:"consecutiveFailures"`
	LastVerdict   *Verdict    `json:"lastVerdict,omitempty"`
	SpecHash      string      `json:"specHash"`
	History       []Entry     `json:"history"`
}

// Entry is one line of a rollout's history.
type Entry struct {
	At   time.Time `json:"at"`
	Type string    `json:"type"` // "transition", "verdict", "push"
	// Transition.
	Event  Event  `json:"event,omitempty"`
	From   State  `json:"from,omitempty"`
	To     State  `json:"to,omitempty"`
	Source string `json:"source,omitempty"` // "judge", "operator", "alert:NAME", "alertmanager", "engine"
	// Push.
	Weights       *Weights `json:"weights,omitempty"`
	ConfigVersion uint64   `json:"configVersion,omitempty"`
	Revision      string   `json:"revision,omitempty"` // resourceVersion of the written Kubernetes object
	Error         string   `json:"error,omitempty"`
	// Verdict.
	Verdict *Verdict `json:"verdict,omitempty"`
	Step    int      `json:"step"`
	Message string   `json:"message,omitempty"`
}

// run is one rollout. Its fields are owned by whoever holds step: the
// engine's steps of one rollout never interleave, while steps of different
// rollouts run side by side.
type run struct {
	key        string        // "ns/name"
	step       chan struct{} // holds a token while a step of this rollout runs
	st         Status
	spec       *Spec
	traffic    Traffic // nil: the provider is not available (state refused)
	lastJudged time.Time
	pushErrs   int
	retryAt    time.Time // no push retry before this
}

// Engine runs rollouts: it watches Rollout objects in the config store,
// judges each active one on live stats and applies its routes through the
// store. It is the one owner of rollout state.
type Engine struct {
	store  *config.Store
	stats  Stats
	opts   Options
	logger *slog.Logger
	path   string

	// mu guards the engine's in-memory state only (runs, view, seq,
	// latest, syncing, releases, mirrored, unappliedBy) and is never held
	// across disk or network I/O. A step of one rollout (a transition, a
	// push, a verdict) holds that rollout's run.step instead: it writes the
	// state file, the mirror and the routes in that order before the
	// rollout's next step starts, so that a restart or a takeover finds the
	// state that explains the routes, while other rollouts' steps, Get,
	// List and FindByVersion go on. Readers read view, which a step
	// publishes as it changes state.
	mu   sync.Mutex
	runs map[string]*run // "ns/name"
	view atomic.Pointer[map[string]Status]
	// seq counts publications of view; saved (under saveMu) is the seq of
	// the view last written to the state file. saveMu orders the writes of
	// that one file; a step whose change a later write already holds does
	// not write it again.
	seq    uint64
	saveMu sync.Mutex
	saved  uint64
	// latest is the last snapshot Sync was given; syncing names the
	// rollouts with a Sync step waiting to take it (Run's Syncs of one
	// rollout coalesce while it is busy).
	latest  *config.Snapshot
	syncing map[string]bool
	// unappliedBy says, by rollout, whether its routes lag its state (the
	// unapplied gauge counts them).
	unappliedBy map[string]bool
	// steps are the steps Run started without waiting; releasing holds a
	// token while the releases of deleted rollouts are retried.
	steps     sync.WaitGroup
	releasing chan struct{}
	releaseID uint64

	transitions *prometheus.CounterVec
	verdicts    *prometheus.CounterVec
	pushes      *prometheus.CounterVec
	unapplied   prometheus.Gauge

	// releases are deleted rollouts whose routes are still to be let go
	// of (retried until the API server takes it).
	releases map[string]release

	// mirrored is the last state given to opts.Mirror, by rollout.
	mirrored map[string]string
	// acting is false on a replica that is not the leader: it changes
	// nothing; leader names the one that does, when known.
	acting atomic.Bool
	leader atomic.Pointer[string]
}

type release struct {
	id       uint64
	traffic  Traffic
	target   Target
	prev     *Weights
	toStable bool
}

// New loads persisted rollout state from opts.DataDir. Register KindSpec
// with the store's kinds; call Run to start the engine.
func New(store *config.Store, stats Stats, opts Options, logger *slog.Logger, reg prometheus.Registerer) (*Engine, error) {
	if opts.DataDir == "" {
		return nil, errors.New("rollout engine: DataDir is required")
	}
	if opts.Tick <= 0 {
		opts.Tick = time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	e := &Engine{store: store, stats: stats, opts: opts, logger: logger,
		path: filepath.Join(opts.DataDir, StateFile), runs: map[string]*run{},
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshlens_rollout_transitions_total",
			Help: "Rollout state transitions by event and new state."}, []string{"event", "state"}),
		verdicts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshlens_rollout_verdicts_total",
			Help: "Judge verdicts by result."}, []string{"result"}),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshlens_rollout_pushes_total",
			Help: "Writes of rollout routes (config store or Kubernetes API), by result: applied, error, unavailable, missing, refused, managed, edited."}, []string{"result"}),
		unapplied: prometheus.NewGauge(prometheus.GaugeOpts{Name: "meshlens_rollout_routes_unapplied",
			Help: "Rollouts whose routes are not yet written as their state says (a rollback waiting for the API server counts here)."}),
		releases: map[string]release{}, mirrored: map[string]string{},
		syncing: map[string]bool{}, unappliedBy: map[string]bool{}, releasing: make(chan struct{}, 1),
	}
	e.acting.Store(true)
	if reg != nil {
		for _, c := range []prometheus.Collector{e.transitions, e.verdicts, e.pushes, e.unapplied} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("rollout engine: register metrics: %w", err)
			}
		}
	}
	if err := os.MkdirAll(opts.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("rollout engine: %w", err)
	}
	data, err := os.ReadFile(e.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("rollout engine: %w", err)
	default:
		var p persisted
		if err := json.Unmarshal(data, &p); err != nil {
			return nil, fmt.Errorf("rollout engine: %s is corrupt: %w", e.path, err)
		}
		for _, st := range p.Rollouts {
			key := st.Namespace + "/" + st.Name
			e.runs[key] = newRun(key)
			e.runs[key].st = st
		}
	}
	v := make(map[string]Status, len(e.runs))
	for key, r := range e.runs {
		v[key] = r.st.clone()
	}
	e.view.Store(&v)
	return e, nil
}

func newRun(key string) *run {
	return &run{key: key, step: make(chan struct{}, 1)}
}

// lock waits for the rollout's step in progress, if any, to end.
func (r *run) lock(ctx context.Context) error {
	select {
	case r.step <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("rollout %s: waiting for its step in progress: %w", r.key, ctx.Err())
	}
}

func (r *run) tryLock() bool {
	select {
	case r.step <- struct{}{}:
		return true
	default:
		return false
	}
}

func (r *run) unlock() { <-r.step }

// acquire locks the run of key (nil when there is none). Called without
// e.mu: a step holds its run's lock and takes e.mu, never the reverse.
func (e *Engine) acquire(ctx context.Context, key string) (*run, error) {
	for range 100 { // the run is replaced only when its rollout is deleted
		e.mu.Lock()
		r := e.runs[key]
		e.mu.Unlock()
		if r == nil {
			return nil, nil
		}
		if err := r.lock(ctx); err != nil {
			return nil, err
		}
		e.mu.Lock()
		same := e.runs[key] == r
		e.mu.Unlock()
		if same {
			return r, nil
		}
		r.unlock()
	}
	return nil, fmt.Errorf("rollout %s: deleted and created again too often to act on", key)
}

// publish makes r's state what readers see: a copy, made by the step that
// changed it (which holds r.step) before any I/O that follows. It returns
// the publication's seq.
func (e *Engine) publish(r *run) uint64 {
	st := r.st.clone()
	e.mu.Lock()
	defer e.mu.Unlock()
	old := *e.view.Load()
	v := make(map[string]Status, len(old)+1)
	for k, s := range old {
		v[k] = s
	}
	if e.runs[r.key] == r {
		v[r.key] = st
	} else {
		delete(v, r.key)
	}
	e.view.Store(&v)
	e.seq++
	return e.seq
}

// remove forgets a deleted rollout (whose step holds r.step).
func (e *Engine) remove(r *run) uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.runs[r.key] == r {
		delete(e.runs, r.key)
	}
	delete(e.mirrored, r.key)
	delete(e.unappliedBy, r.key)
	e.setUnappliedLocked()
	old := *e.view.Load()
	v := make(map[string]Status, len(old))
	for k, s := range old {
		if k != r.key {
			v[k] = s
		}
	}
	e.view.Store(&v)
	e.seq++
	return e.seq
}

func (e *Engine) setUnappliedLocked() {
	n := 0
	for _, u := range e.unappliedBy {
		if u {
			n++
		}
	}
	e.unapplied.Set(float64(n))
}

type persisted struct {
	Rollouts []Status `json:"rollouts"`
}

// Run drives the rollouts until ctx ends: it follows Rollout objects as
// they are applied and judges active rollouts.
// Each rollout's steps run on their own: one rollout waiting for a slow API
// server or disk holds up neither the loop nor the other rollouts.
func (e *Engine) Run(ctx context.Context) error {
	defer e.steps.Wait()
	snaps := e.store.Watch(ctx)
	t := time.NewTicker(e.opts.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case sn, ok := <-snaps:
			if !ok {
				return nil
			}
			e.sync(ctx, sn, true)
		case <-t.C:
			e.tick(ctx)
		}
	}
}

// specHash identifies what a rollout moves: service, versions, strategy.
// The analysis is left out: tuning the judge of a running rollout takes
// effect at its next verdict instead of starting it over.
func specHash(s *Spec) string {
	c := *s
	c.Analysis = Analysis{}
	b, _ := json.Marshal(&c)
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}

// Sync takes on new and changed Rollout objects and forgets deleted ones,
// and returns when every rollout has taken sn (or ctx ends).
// A changed service, version or strategy starts the rollout over; a changed
// analysis does not.
// A rollout loaded from disk whose spec is unchanged keeps its state, step
// and weights; its routes are re-applied only if the store lacks them
// (an identical apply is no change and pushes nothing).
func (e *Engine) Sync(ctx context.Context, sn *config.Snapshot) {
	e.sync(ctx, sn, false).Wait()
}

// sync starts a step for every rollout of sn or of the engine that takes
// the latest snapshot. With coalesce, a rollout that already has such a
// step waiting (it is busy) gets no second one.
func (e *Engine) sync(ctx context.Context, sn *config.Snapshot, coalesce bool) *sync.WaitGroup {
	e.mu.Lock()
	e.latest = sn
	keys := map[string]bool{}
	for _, o := range sn.OfKind(Kind) {
		if _, ok := o.Spec.(*Spec); ok {
			keys[o.Meta.Namespace+"/"+o.Meta.Name] = true
		}
	}
	for key := range e.runs {
		keys[key] = true
	}
	var start []string
	for key := range keys {
		if coalesce && e.syncing[key] {
			continue
		}
		e.syncing[key] = true
		start = append(start, key)
	}
	e.mu.Unlock()
	var wg sync.WaitGroup
	for _, key := range start {
		wg.Add(1)
		e.steps.Add(1)
		go func() {
			defer e.steps.Done()
			defer wg.Done()
			e.syncKey(ctx, key)
		}()
	}
	return &wg
}

// syncKey is the step that makes one rollout follow the latest snapshot.
func (e *Engine) syncKey(ctx context.Context, key string) {
	for range 100 { // the run is replaced only when its rollout is deleted
		e.mu.Lock()
		r := e.runs[key]
		if r == nil {
			if specOf(e.latest, key) == nil {
				delete(e.syncing, key)
				e.mu.Unlock()
				return
			}
			r = newRun(key) // published by its first step
			e.runs[key] = r
		}
		e.mu.Unlock()
		if err := r.lock(ctx); err != nil {
			e.mu.Lock()
			delete(e.syncing, key)
			e.mu.Unlock()
			return
		}
		e.mu.Lock()
		if e.runs[key] != r {
			e.mu.Unlock()
			r.unlock()
			continue
		}
		delete(e.syncing, key) // a snapshot from now on needs a step of its own
		sn := e.latest
		e.mu.Unlock()
		e.syncRun(ctx, r, sn)
		r.unlock()
		return
	}
}

func specOf(sn *config.Snapshot, key string) *config.Object {
	if sn == nil {
		return nil
	}
	for _, o := range sn.OfKind(Kind) {
		if _, ok := o.Spec.(*Spec); ok && o.Meta.Namespace+"/"+o.Meta.Name == key {
			return o
		}
	}
	return nil
}

// syncRun makes r follow its object in sn; the caller holds r.step.
func (e *Engine) syncRun(ctx context.Context, r *run, sn *config.Snapshot) {
	key := r.key
	o := specOf(sn, key)
	if o == nil {
		if r.spec != nil || r.st.SpecHash != "" {
			e.release(ctx, r)
		}
		e.writeState(e.remove(r))
		return
	}
	spec := o.Spec.(*Spec)
	h := specHash(spec)
	if r.st.SpecHash == h {
		if r.spec == nil { // loaded from disk: resume
			r.spec = spec
			r.traffic, _, _ = e.providerOf(spec)
			e.logger.Info("rollout resumed", "rollout", key, "state", r.st.State, "step", r.st.Step, "weights", r.st.Weights)
			if r.st.State != Failed && r.st.State != Refused && !r.st.RoutesEdited {
				e.reconcile(ctx, r)
			}
		} else if !reflect.DeepEqual(r.spec.Analysis, spec.Analysis) {
			r.spec = spec
			e.logger.Info("rollout analysis changed; the rollout goes on at its step", "rollout", key, "step", r.st.Step)
		}
		e.publish(r)
		return
	}
	versions := subsetVersions(sn, o.Meta.Namespace, spec.Service, e.opts.DomainSuffix)
	now := e.opts.Now()
	traffic, provider, perr := e.providerOf(spec)
	old := *r
	*r = run{key: key, step: r.step, spec: spec, traffic: traffic, st: Status{Namespace: o.Meta.Namespace, Name: o.Meta.Name, Service: spec.Service,
		Strategy: strategyName(spec), Stable: spec.Stable, Candidate: spec.Candidate,
		StableVersion: versionOf(versions, spec.Stable), CandidateVersion: versionOf(versions, spec.Candidate),
		State: Pending, Provider: provider, StartedAt: now, StepStartedAt: now, UpdatedAt: now, SpecHash: h}}
	if provider == ProviderGatewayAPI {
		r.st.HTTPRoute = spec.HTTPRoute
	} else {
		r.st.VirtualService = e.vsNameFor(sn, o.Meta.Namespace, spec)
	}
	if c := spec.Strategy.Canary; c != nil {
		r.st.Steps = c.Steps
	}
	r.st.History = old.st.History // one history across revisions of the rollout
	if old.traffic != nil && old.st.Provider != provider {
		// Another provider now: the old one's routes are let go of.
		e.release(ctx, &old)
	}
	e.mu.Lock()
	delete(e.releases, key)
	e.mu.Unlock()
	if perr == nil {
		if fields := providerFields(spec, provider); len(fields) > 0 {
			perr = fmt.Errorf("spec.%s: %s", fields[0][0], fields[0][1])
		}
	}
	if perr != nil {
		r.traffic = nil
		e.setCondition(r, "False", ReasonNoProvider, perr.Error())
		_ = e.fire(ctx, r, EvRefuse, "engine", perr.Error())
		return
	}
	_ = e.fire(ctx, r, EvStart, "engine", "rollout of "+spec.Candidate+" started")
}

// release lets go of the routes of a deleted rollout: unless the
// candidate was promoted (or nothing was ever written), they go back to
// stable, and the owner mark is removed. A release the provider cannot do
// now is retried by Tick.
func (e *Engine) release(ctx context.Context, r *run) {
	key := r.key
	if r.traffic == nil || r.spec == nil {
		e.logger.Info("rollout deleted", "rollout", key)
		return
	}
	if _, ok := r.traffic.(storeTraffic); ok {
		e.logger.Info("rollout deleted; its VirtualService is left as it is", "rollout", key)
		return
	}
	toStable := r.st.State != Succeeded && r.st.State != Promoting && !r.st.RoutesEdited
	rel := release{traffic: r.traffic, target: e.target(r), prev: r.st.Applied, toStable: toStable}
	if err := rel.traffic.Release(ctx, rel.target, rel.prev, rel.toStable); err != nil {
		e.logger.Warn("rollout deleted; its routes are not released yet, retrying", "rollout", key, "err", err)
		e.mu.Lock()
		e.releaseID++
		rel.id = e.releaseID
		e.releases[key] = rel
		e.mu.Unlock()
		return
	}
	e.logger.Info("rollout deleted; its routes are released", "rollout", key, "provider", r.st.Provider, "toStable", toStable)
}

func (e *Engine) target(r *run) Target {
	return Target{Namespace: r.st.Namespace, Name: r.st.Name, Spec: r.spec, VirtualService: r.st.VirtualService}
}

// vsNameFor is the VirtualService a rollout writes: spec.virtualService,
// else the one that already routes the host (so the rollout takes over its
// routes instead of conflicting with it), else the service's short name.
func (e *Engine) vsNameFor(sn *config.Snapshot, ns string, spec *Spec) string {
	if spec.VirtualService != "" {
		return spec.VirtualService
	}
	fqdn := config.FQDN(spec.Service, ns, e.opts.DomainSuffix)
	for _, o := range sn.OfKind(config.KindVirtualService) {
		vs, ok := o.Spec.(*networking.VirtualService)
		if !ok || o.Meta.Namespace != ns || len(vs.GetGateways()) > 0 {
			continue
		}
		for _, h := range vs.GetHosts() {
			if config.FQDN(h, ns, e.opts.DomainSuffix) == fqdn {
				return o.Meta.Name
			}
		}
	}
	return spec.vsName()
}

func versionOf(versions map[string]string, subset string) string {
	if v, ok := versions[subset]; ok {
		return v
	}
	return subset
}

func strategyName(s *Spec) string {
	switch {
	case s.Strategy.Canary != nil:
		return "canary"
	case s.Strategy.BlueGreen != nil:
		return "blueGreen"
	case s.Strategy.AB != nil:
		return "ab"
	}
	return ""
}

// fire applies one event: the new state is persisted, then its routes are
// applied (persisted by the store, then pushed), so a restart at any point
// finds either the old or the new routes and the state that explains them.
func (e *Engine) fire(ctx context.Context, r *run, ev Event, source, msg string) error {
	from := r.st.State
	to, err := next(from, ev)
	if err != nil {
		return err
	}
	now := e.opts.Now()
	r.st.State = to
	switch ev {
	case EvStart:
		r.st.Step, r.st.StepStartedAt = 0, now
	case EvAdvance:
		r.st.Step++
		r.st.StepStartedAt = now
	case EvResume:
		// Time spent paused is not time judged: the step starts over, so
		// its minDuration, minRequests and the judge's window all count
		// traffic seen since the resume.
		r.st.StepStartedAt = now
	}
	switch ev {
	case EvResume, EvPromote, EvAbort, EvAlert, EvFail:
		if r.st.RoutesEdited {
			// Someone decided after the routes were changed behind the
			// rollout's back: the next write takes them as they are.
			r.st.RoutesEdited = false
			r.st.Applied = nil
		}
	}
	r.st.Failures = 0
	r.st.Message = msg
	r.st.UpdatedAt = now
	r.st.Weights = desiredWeights(r.spec, to, r.st.Step)
	if to == Refused {
		// Nothing more is written: the routes are what was last applied
		// (zero weights: the rollout never wrote them).
		r.st.Weights = Weights{}
		if r.st.Applied != nil {
			r.st.Weights = *r.st.Applied
		}
	}
	r.pushErrs, r.retryAt = 0, time.Time{}
	r.lastJudged = now // a new step is judged after a full interval of its own traffic
	tr := Entry{At: now, Type: "transition", Event: ev, From: from, To: to, Source: source, Step: r.st.Step, Message: msg}
	e.record(r, tr)
	if e.opts.Audit != nil {
		e.opts.Audit(ctx, r.st.Namespace, r.st.Name, tr)
	}
	e.transitions.WithLabelValues(string(ev), string(to)).Inc()
	e.logger.Info("rollout transition", "rollout", r.st.Namespace+"/"+r.st.Name, "event", ev, "from", from, "to", to,
		"step", r.st.Step, "weights", r.st.Weights, "source", source, "message", msg)
	e.save(ctx, r)
	// failed: routes could not be applied; refused: the API server said
	// no; edited: someone else holds the routes. No writes until a new
	// spec or an operator.
	if to != Failed && to != Refused && !r.st.RoutesEdited {
		e.reconcile(ctx, r)
	}
	return nil
}

// reconcile applies the rollout's desired routes if they are not yet
// applied, and completes promoting / rolling back once they are.
func (e *Engine) reconcile(ctx context.Context, r *run) {
	if r.traffic == nil {
		return
	}
	w := r.st.Weights
	prev := r.st.Applied
	if r.st.State == RollingBack {
		prev = nil // a rollback is written over whatever the routes hold
	}
	res, err := r.traffic.Apply(ctx, e.target(r), prev, w)
	now := e.opts.Now()
	if err != nil {
		e.pushFailed(ctx, r, w, err, now)
		e.save(ctx, r)
		return
	}
	r.pushErrs = 0
	if res.Changed || r.st.Applied == nil || *r.st.Applied != w {
		e.pushes.WithLabelValues("applied").Inc()
		en := Entry{At: now, Type: "push", Weights: &w, Step: r.st.Step}
		if r.st.Provider == ProviderMeshlens || r.st.Provider == "" {
			en.ConfigVersion, _ = strconv.ParseUint(res.Revision, 10, 64)
		} else {
			en.Revision = res.Revision
		}
		e.record(r, en)
		if e.opts.Audit != nil {
			e.opts.Audit(ctx, r.st.Namespace, r.st.Name, en)
		}
	}
	r.st.Applied = &w
	e.setCondition(r, "True", ReasonApplied, fmt.Sprintf("the routes hold stable %d%%, candidate %d%% (%s)", w.Stable, w.Candidate, e.routesName(r)))
	e.save(ctx, r)
	if r.st.State == Promoting || r.st.State == RollingBack {
		_ = e.fire(ctx, r, EvPushed, "engine", fmt.Sprintf("routes applied (%s)", revisionText(r.st.Provider, res.Revision)))
	}
}

func revisionText(provider, rev string) string {
	if provider == ProviderMeshlens || provider == "" {
		return "config version " + rev
	}
	return "resourceVersion " + rev
}

// routesName names the object a rollout writes, for messages.
func (e *Engine) routesName(r *run) string {
	switch r.st.Provider {
	case ProviderGatewayAPI:
		return "HTTPRoute " + r.st.Namespace + "/" + r.st.HTTPRoute
	case ProviderIstio:
		return "VirtualService " + r.st.Namespace + "/" + r.st.VirtualService + " in the Kubernetes API"
	}
	return "VirtualService " + r.st.Namespace + "/" + r.st.VirtualService + " in meshlens' config"
}

// pushFailed decides what a failed write means for the rollout.
func (e *Engine) pushFailed(ctx context.Context, r *run, w Weights, err error, now time.Time) {
	key := r.st.Namespace + "/" + r.st.Name
	e.record(r, Entry{At: now, Type: "push", Weights: &w, Error: err.Error(), Step: r.st.Step})
	backoff := func(limit time.Duration) {
		r.retryAt = now.Add(min(time.Duration(1<<min(r.pushErrs, 5))*e.opts.Tick, limit))
	}
	switch {
	case errors.Is(err, ErrEdited):
		e.pushes.WithLabelValues("edited").Inc()
		e.routesEdited(ctx, r, err)
	case errors.Is(err, ErrMissing):
		// Not the rollout's fault and nothing was written: wait for the
		// object, without counting towards a rollback.
		e.pushes.WithLabelValues("missing").Inc()
		e.setCondition(r, "False", ReasonNotFound, err.Error()+"; retrying until it exists")
		e.logger.Warn("rollout routes cannot be written yet", "rollout", key, "err", err)
		r.pushErrs = min(r.pushErrs+1, 3)
		backoff(5 * time.Second)
	case errors.Is(err, ErrManaged), errors.Is(err, ErrRefused):
		reason := ReasonRefused
		result := "refused"
		if errors.Is(err, ErrManaged) {
			reason, result = ReasonManaged, "managed"
		}
		e.pushes.WithLabelValues(result).Inc()
		e.setCondition(r, "False", reason, err.Error())
		e.logger.Error("rollout routes refused; the rollout stops", "rollout", key, "err", err)
		_ = e.fire(ctx, r, EvRefuse, "engine", err.Error())
	case errors.Is(err, ErrUnavailable):
		// Retried until it lands; a rollback never gives up.
		r.pushErrs++
		e.pushes.WithLabelValues("unavailable").Inc()
		what := "routes"
		if r.st.State == RollingBack {
			what = "rollback"
		}
		e.setCondition(r, "False", ReasonUnavailable, fmt.Sprintf("%s not written yet (attempt %d), retrying until it lands: %v", what, r.pushErrs, err))
		e.logger.Error("rollout routes not written; retrying", "rollout", key, "state", r.st.State, "attempt", r.pushErrs, "err", err)
		backoff(5 * time.Second)
	default:
		r.pushErrs++
		e.pushes.WithLabelValues("error").Inc()
		e.setCondition(r, "False", ReasonError, err.Error())
		e.logger.Error("rollout push failed", "rollout", key, "err", err)
		// Retry with back-off; a rollout whose routes cannot be applied is
		// rolled back, and a rollback that cannot be applied fails.
		backoff(15 * time.Second)
		switch {
		case r.st.State == RollingBack && r.pushErrs >= 5:
			_ = e.fire(ctx, r, EvGiveUp, "engine", "rollback push keeps failing: "+err.Error())
		case (r.st.State == Progressing || r.st.State == Paused || r.st.State == Promoting) && r.pushErrs >= 3:
			_ = e.fire(ctx, r, EvAbort, "engine", "routes cannot be applied: "+err.Error())
		}
	}
}

// routesEdited pauses a rollout whose routes someone else changed: it does
// not fight them. Resume writes the rollout's routes over the change;
// promote and abort (and alerts) do too.
func (e *Engine) routesEdited(ctx context.Context, r *run, err error) {
	r.st.RoutesEdited = true
	msg := fmt.Sprintf("%v; the rollout is paused and writes nothing until it is resumed (its routes then replace the change), promoted or aborted", err)
	e.setCondition(r, "False", ReasonEdited, msg)
	e.logger.Warn("rollout routes changed by someone else; pausing", "rollout", r.st.Namespace+"/"+r.st.Name, "err", err)
	if r.st.State == Progressing || r.st.State == Promoting {
		_ = e.fire(ctx, r, EvPause, "engine", msg)
		return
	}
	r.st.Message = msg
	e.save(ctx, r)
}

func (e *Engine) record(r *run, en Entry) {
	r.st.History = append(r.st.History, en)
	if len(r.st.History) > MaxHistory {
		drop := 0
		for i, h := range r.st.History {
			if h.Type == "verdict" {
				drop = i
				break
			}
		}
		r.st.History = append(r.st.History[:drop], r.st.History[drop+1:]...)
	}
}

// save publishes r's state, writes the state of every rollout durably
// (temp file, fsync, rename) and r's to the mirror when it changed. The
// caller holds r.step: its next write (of routes) comes after.
func (e *Engine) save(ctx context.Context, r *run) {
	e.writeState(e.publish(r))
	e.mirror(ctx, r)
}

// writeState writes the published state of every rollout to the state
// file unless a write since publication seq already did.
func (e *Engine) writeState(seq uint64) {
	e.saveMu.Lock()
	defer e.saveMu.Unlock()
	if e.saved >= seq {
		return
	}
	e.mu.Lock()
	v, at := *e.view.Load(), e.seq
	e.mu.Unlock()
	p := persisted{Rollouts: make([]Status, 0, len(v))}
	for _, st := range v {
		p.Rollouts = append(p.Rollouts, st)
	}
	sort.Slice(p.Rollouts, func(i, j int) bool {
		return p.Rollouts[i].Namespace+"/"+p.Rollouts[i].Name < p.Rollouts[j].Namespace+"/"+p.Rollouts[j].Name
	})
	if err := atomicfile.WriteJSON(e.path, p); err != nil {
		e.logger.Error("rollout state not saved", "err", err)
		return
	}
	e.saved = at
}

// mirror gives r's state to opts.Mirror when it changed since last given.
func (e *Engine) mirror(ctx context.Context, r *run) {
	e.mu.Lock()
	m := e.opts.Mirror
	e.mu.Unlock()
	if m == nil || !e.acting.Load() {
		return // a replica that does not act never overwrites the leader's state
	}
	st := r.st.clone()
	b, _ := json.Marshal(st)
	e.mu.Lock()
	same := e.mirrored[r.key] == string(b)
	e.mu.Unlock()
	if same {
		return
	}
	if err := m.SaveRollout(ctx, st); err != nil {
		e.logger.Warn("rollout state not mirrored; retried with the next change", "rollout", r.key, "err", err)
		return
	}
	e.mu.Lock()
	e.mirrored[r.key] = string(b)
	e.mu.Unlock()
}

// SetMirror sets where the state of every rollout that changes is also
// written (see Options.Mirror); call it before Run.
func (e *Engine) SetMirror(m Mirror) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.opts.Mirror = m
}

// SetActing says whether this replica runs the rollouts (it is the leader,
// or the only replica) and, when it does not, which replica does. A
// replica that does not act refuses every change with ErrNotLeader and
// mirrors nothing; a step already under way finishes its writes.
func (e *Engine) SetActing(acting bool, leader string) {
	e.leader.Store(&leader)
	e.acting.Store(acting)
}

// Leader is the replica that runs the rollouts when this one does not
// ("" when unknown or when this one does).
func (e *Engine) Leader() string {
	if e.acting.Load() {
		return ""
	}
	if l := e.leader.Load(); l != nil {
		return *l
	}
	return ""
}

// Restore takes the state of rollouts as another replica left it (from the
// mirror), in place of this replica's own: the next Sync resumes each one
// at its state, step and weights, and its routes, which the store or the
// API server already hold, are not written again. It is refused while
// this replica acts. Each rollout is taken between two of its steps.
func (e *Engine) Restore(ctx context.Context, states []Status) error {
	if e.acting.Load() {
		return errors.New("rollout engine: restore while acting")
	}
	var seq uint64
	for _, st := range states {
		key := st.Namespace + "/" + st.Name
		r, err := e.acquire(ctx, key)
		if err != nil {
			return fmt.Errorf("rollout engine: restore: %w", err)
		}
		if r == nil {
			e.mu.Lock()
			if e.runs[key] == nil {
				r = newRun(key)
				r.step <- struct{}{}
				e.runs[key] = r
			}
			e.mu.Unlock()
			if r == nil {
				if r, err = e.acquire(ctx, key); err != nil || r == nil {
					return fmt.Errorf("rollout engine: restore %s: %w", key, err)
				}
			}
		}
		if r.st.UpdatedAt.After(st.UpdatedAt) && r.spec != nil {
			r.unlock()
			continue // this replica's own is newer (it was the leader)
		}
		*r = run{key: key, step: r.step, st: st}
		b, _ := json.Marshal(st)
		e.mu.Lock()
		e.mirrored[key] = string(b)
		e.mu.Unlock()
		seq = e.publish(r)
		r.unlock()
	}
	e.writeState(seq)
	return nil
}

// Tick judges every progressing rollout whose interval has passed, retries
// pushes that failed, and moves rollouts whose step is done; it returns
// when the steps it started are done. A rollout whose step is still under
// way is looked at on the next tick.
func (e *Engine) Tick(ctx context.Context) {
	e.tick(ctx).Wait()
}

func (e *Engine) tick(ctx context.Context) *sync.WaitGroup {
	now := e.opts.Now()
	var wg sync.WaitGroup
	start := func(f func()) {
		wg.Add(1)
		e.steps.Add(1)
		go func() {
			defer e.steps.Done()
			defer wg.Done()
			f()
		}()
	}
	select {
	case e.releasing <- struct{}{}:
		start(func() {
			defer func() { <-e.releasing }()
			e.retryReleases(ctx)
		})
	default:
	}
	e.mu.Lock()
	runs := make([]*run, 0, len(e.runs))
	for _, r := range e.runs {
		runs = append(runs, r)
	}
	e.mu.Unlock()
	for _, r := range runs {
		if !r.tryLock() {
			continue
		}
		start(func() {
			defer r.unlock()
			e.mu.Lock()
			current := e.runs[r.key] == r
			e.mu.Unlock()
			if !current {
				return
			}
			unapplied := e.tickRun(ctx, r, now)
			e.mu.Lock()
			if e.runs[r.key] == r {
				e.unappliedBy[r.key] = unapplied
				e.setUnappliedLocked()
			}
			e.mu.Unlock()
		})
	}
	return &wg
}

// retryReleases lets go of the routes of deleted rollouts that the
// provider could not release before.
func (e *Engine) retryReleases(ctx context.Context) {
	e.mu.Lock()
	rels := make(map[string]release, len(e.releases))
	for key, rel := range e.releases {
		rels[key] = rel
	}
	e.mu.Unlock()
	for key, rel := range rels {
		if err := rel.traffic.Release(ctx, rel.target, rel.prev, rel.toStable); err != nil {
			continue
		}
		e.mu.Lock()
		if e.releases[key].id == rel.id {
			delete(e.releases, key)
		}
		e.mu.Unlock()
		e.logger.Info("rollout deleted; its routes are released", "rollout", key)
	}
}

// tickRun is one rollout's part of a tick; the caller holds r.step. It
// reports whether the rollout's routes lag its state.
func (e *Engine) tickRun(ctx context.Context, r *run, now time.Time) (unapplied bool) {
	if r.spec == nil {
		return false // loaded from disk, its object not seen yet
	}
	if r.st.State == Failed || r.st.State == Refused || r.st.RoutesEdited || r.traffic == nil {
		return false // waits for an operator or a new spec
	}
	defer e.publish(r)
	if r.st.Applied == nil || *r.st.Applied != r.st.Weights {
		if !now.Before(r.retryAt) {
			e.reconcile(ctx, r)
		}
		return true
	}
	if r.st.State != Progressing {
		return false
	}
	a := r.spec.Analysis.withDefaults()
	if now.Sub(r.lastJudged) < a.Interval.Duration {
		return false
	}
	r.lastJudged = now
	if !e.checkRoutes(ctx, r) {
		return false
	}
	e.judgeStep(ctx, r, a, now)
	return false
}

// checkRoutes asks the provider whether the routes still hold what the
// rollout wrote before judging a step on the traffic they carry; false
// when they do not (the rollout pauses or waits).
func (e *Engine) checkRoutes(ctx context.Context, r *run) bool {
	err := r.traffic.Check(ctx, e.target(r), *r.st.Applied)
	switch {
	case err == nil:
		return true
	case errors.Is(err, ErrEdited):
		e.pushes.WithLabelValues("edited").Inc()
		e.routesEdited(ctx, r, err)
		return false
	case errors.Is(err, ErrMissing):
		// Gone: written again when it is back.
		r.st.Applied = nil
		e.setCondition(r, "False", ReasonNotFound, err.Error()+"; retrying until it exists")
		e.save(ctx, r)
		return false
	case errors.Is(err, ErrManaged):
		e.setCondition(r, "False", ReasonManaged, err.Error())
		_ = e.fire(ctx, r, EvRefuse, "engine", err.Error())
		return false
	}
	// The API server cannot be read: judge anyway, the routes were written.
	e.logger.Warn("rollout routes cannot be checked", "rollout", r.st.Namespace+"/"+r.st.Name, "err", err)
	return true
}

func (e *Engine) judgeStep(ctx context.Context, r *run, a Analysis, now time.Time) {
	key := r.st.Namespace + "/" + r.st.Name
	sinceStep := now.Sub(r.st.StepStartedAt)
	window := min(a.Window.Duration, sinceStep, e.stats.MaxWindow())
	if window < time.Second {
		window = time.Second
	}
	svc := shortName(r.spec.Service)
	cand, err1 := e.stats.CurrentVersionStats(ctx, r.st.Namespace, svc, r.st.CandidateVersion, window)
	stable, err2 := e.stats.CurrentVersionStats(ctx, r.st.Namespace, svc, r.st.StableVersion, window)
	stepWindow := max(min(sinceStep, e.stats.MaxWindow()), time.Second)
	stepCand, err3 := e.stats.CurrentVersionStats(ctx, r.st.Namespace, svc, r.st.CandidateVersion, stepWindow)
	if err := errors.Join(err1, err2, err3); err != nil {
		e.logger.Error("rollout judge cannot read stats", "rollout", key, "err", err)
		return
	}
	v := judge(a, cand, stable, r.st.CandidateVersion, r.st.StableVersion)
	v.At, v.Step, v.Window = now, r.st.Step, Duration{window.Round(time.Millisecond)}
	r.st.LastVerdict = &v
	e.record(r, Entry{At: now, Type: "verdict", Verdict: &v, Step: r.st.Step})
	e.verdicts.WithLabelValues(string(v.Result)).Inc()
	switch v.Result {
	case Fail:
		r.st.Failures++
		if r.st.Failures >= a.FailureLimit {
			_ = e.fire(ctx, r, EvFail, "judge", fmt.Sprintf("%d failing verdicts in a row: %v", r.st.Failures, v.Reasons))
		}
		return
	case Inconclusive:
		return
	}
	r.st.Failures = 0
	successes := stepCand.Requests - stepCand.Errors
	if successes < a.MinSuccess {
		return
	}
	switch s := r.spec; {
	case s.Strategy.Canary != nil:
		c := s.Strategy.Canary
		if sinceStep < c.MinDuration.Duration || stepCand.Requests < c.MinRequests {
			return
		}
		msg := fmt.Sprintf("step %d (%d%%) passed: %d candidate requests, error rate %.4f, p99 %.1f ms",
			r.st.Step, c.Steps[r.st.Step], stepCand.Requests, stepCand.ErrorRate, stepCand.P99Ms)
		if r.st.Step+1 >= len(c.Steps) {
			_ = e.fire(ctx, r, EvComplete, "judge", msg)
		} else {
			_ = e.fire(ctx, r, EvAdvance, "judge", msg)
		}
	case s.Strategy.BlueGreen != nil:
		b := s.Strategy.BlueGreen
		if b.AutoPromote && sinceStep >= b.MinDuration.Duration && stepCand.Requests >= b.MinRequests {
			_ = e.fire(ctx, r, EvComplete, "judge", fmt.Sprintf("preview passed: %d candidate requests", stepCand.Requests))
		}
	case s.Strategy.AB != nil:
		ab := s.Strategy.AB
		if (ab.Duration.Duration > 0 && sinceStep >= ab.Duration.Duration) || (ab.Requests > 0 && stepCand.Requests >= ab.Requests) {
			_ = e.fire(ctx, r, EvComplete, "judge", fmt.Sprintf("A/B test passed: %d candidate requests in %v", stepCand.Requests, sinceStep.Round(time.Second)))
		}
	}
}

// ActionResult says what an action did.
type ActionResult struct {
	Rollout string `json:"rollout"` // "ns/name"
	From    State  `json:"from"`
	To      State  `json:"to"`
	// Changed is false when the rollout already was where the action
	// leads (a repeated abort, a duplicate alert).
	Changed bool   `json:"changed"`
	Message string `json:"message"`
}

// Do applies an operator or alert event to a rollout: EvPause, EvResume,
// EvPromote, EvAbort or EvAlert. Rolling back a rollout that is already
// rolling back or rolled back is not an error (alerts repeat).
func (e *Engine) Do(ctx context.Context, ns, name string, ev Event, source, reason string) (ActionResult, error) {
	key := ns + "/" + name
	if !e.acting.Load() {
		return ActionResult{Rollout: key}, fmt.Errorf("rollout %s: %w; the leader does: %s", key, ErrNotLeader, e.Leader())
	}
	// Waits for this rollout's step under way, if any; not for others'.
	r, err := e.acquire(ctx, key)
	if err != nil {
		return ActionResult{Rollout: key}, err
	}
	if r == nil {
		return ActionResult{Rollout: key}, fmt.Errorf("rollout %s: %w", key, ErrNotFound)
	}
	defer r.unlock()
	if r.spec == nil {
		return ActionResult{Rollout: key}, fmt.Errorf("rollout %s: %w", key, ErrNotFound)
	}
	defer e.publish(r)
	from := r.st.State
	if r.traffic == nil {
		return ActionResult{Rollout: key, From: from, To: from}, fmt.Errorf("rollout %s: %w: %s", key, ErrTransition, r.st.Message)
	}
	if (ev == EvAbort || ev == EvAlert) && (from == RollingBack || from == RolledBack) {
		return ActionResult{Rollout: key, From: from, To: from, Message: "already " + string(from)}, nil
	}
	if err := e.fire(ctx, r, ev, source, reason); err != nil {
		return ActionResult{Rollout: key, From: from, To: from}, fmt.Errorf("rollout %s: %w", key, err)
	}
	return ActionResult{Rollout: key, From: from, To: r.st.State, Changed: true, Message: r.st.Message}, nil
}

// Rollback rolls a rollout back because of an alert.
func (e *Engine) Rollback(ctx context.Context, ns, name, source, reason string) (ActionResult, error) {
	return e.Do(ctx, ns, name, EvAlert, source, reason)
}

// FindByVersion returns the rollouts of a service whose candidate version
// (or subset) is version and that are not finished; version "" matches any.
func (e *Engine) FindByVersion(ns, service, version string) []string {
	var out []string
	for key, st := range *e.view.Load() {
		if st.Namespace != ns || shortName(st.Service) != shortName(service) {
			continue
		}
		if version != "" && st.CandidateVersion != version && st.Candidate != version {
			continue
		}
		if st.State.Terminal() {
			continue
		}
		out = append(out, key)
	}
	sort.Strings(out)
	return out
}

// Get returns a copy of one rollout's status.
func (e *Engine) Get(ns, name string) (Status, bool) {
	st, ok := (*e.view.Load())[ns+"/"+name]
	if !ok {
		return Status{}, false
	}
	return st.clone(), true
}

// List returns copies of every rollout's status without history.
func (e *Engine) List() []Status {
	v := *e.view.Load()
	out := make([]Status, 0, len(v))
	for _, st := range v {
		st := st.clone()
		st.History = nil
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Namespace+"/"+out[i].Name < out[j].Namespace+"/"+out[j].Name })
	return out
}

// clone copies what the engine changes in place: the readers' copy stays
// as it was published.
func (s Status) clone() Status {
	s.History = append([]Entry(nil), s.History...)
	s.Steps = append([]int32(nil), s.Steps...)
	s.Conditions = append([]Condition(nil), s.Conditions...)
	return s
}
