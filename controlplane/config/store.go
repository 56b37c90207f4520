package config

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	stdmaps "maps" // a test of this package declares maps
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/meshlens/meshlens/internal/atomicfile"
)

// StateFile is the file, under the data dir, that holds accepted config.
const StateFile = "config.json"

// SourceAPI is the origin of objects applied through Store.Apply (the REST
// API and the CLI). Objects from the config dir have origin "dir:FILE".
const SourceAPI = "api"

var (
	// ErrNotFound is returned for an object the store does not hold.
	ErrNotFound = errors.New("not found")
	// ErrOwned is returned when the API tries to delete an object that
	// another source (the config dir) owns.
	ErrOwned = errors.New("owned by another source")
)

// Store holds accepted configuration. It is the one owner of config state:
// every change is validated as a whole batch, written durably, and only then
// published as a new immutable Snapshot with a higher Version.
//
// Objects have one owner each. The config dir owns the objects its files
// define: it may replace an object first applied through the API, and the
// API may then neither change nor delete it until the file stops defining
// it (GitOps wins, so a directory checkout is the truth for what it names).
// Objects only the API applied are the API's.
type Store struct {
	kinds  *Kinds
	path   string
	logger *slog.Logger

	mu      sync.Mutex        // serialises changes
	origins map[string]string // key -> origin ("api", "dir:reviews.yaml")
	cur     atomic.Pointer[Snapshot]

	wmu      sync.Mutex // guards watchers and sends to them
	watchers map[chan *Snapshot]struct{}

	version prometheus.Gauge
	objects prometheus.Gauge
	changes *prometheus.CounterVec

	auditor func(context.Context, Change) // see SetAuditor; under mu
	sharing *Sharing                      // see NewSharing; under mu
}

// persisted is the on-disk form of the store.
type persisted struct {
	Version uint64            `json:"version"`
	Objects []persistedObject `json:"objects"`
}

type persistedObject struct {
	Origin string          `json:"origin"`
	Object json.RawMessage `json:"object"`
}

// Open loads the store from dataDir (creating the directory if needed).
// reg may be nil.
func Open(dataDir string, kinds *Kinds, logger *slog.Logger, reg prometheus.Registerer) (*Store, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("config store: create data dir: %w", err)
	}
	s := &Store{
		kinds:    kinds,
		path:     filepath.Join(dataDir, StateFile),
		logger:   logger,
		origins:  map[string]string{},
		watchers: map[chan *Snapshot]struct{}{},
		version: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshlens_config_version", Help: "Version of the published config snapshot."}),
		objects: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshlens_config_objects", Help: "Objects in the published config snapshot."}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshlens_config_changes_total", Help: "Config changes by source and result (applied, unchanged, invalid, error)."},
			[]string{"source", "result"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{s.version, s.objects, s.changes} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("config store: register metrics: %w", err)
			}
		}
	}
	// Temp files of writes a crash interrupted; the state file is intact.
	if stale, _ := filepath.Glob(filepath.Join(dataDir, StateFile+".tmp-*")); len(stale) > 0 {
		for _, f := range stale {
			_ = os.Remove(f)
		}
	}
	sn, err := s.load()
	if err != nil {
		return nil, err
	}
	s.cur.Store(sn)
	s.version.Set(float64(sn.Version))
	s.objects.Set(float64(len(sn.Objects)))
	return s, nil
}

func (s *Store) load() (*Snapshot, error) {
	data, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return &Snapshot{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("config store: %w", err)
	}
	var p persisted
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("config store: %s is corrupt: %w", s.path, err)
	}
	var objs []*Object
	var errs FieldErrors
	for i, po := range p.Objects {
		var top map[string]json.RawMessage
		if err := json.Unmarshal(po.Object, &top); err != nil {
			return nil, fmt.Errorf("config store: %s object %d: %w", s.path, i, err)
		}
		o, es := s.kinds.parseObject(fmt.Sprintf("stored object %d", i), top)
		if len(es) > 0 {
			errs = append(errs, es...)
			continue
		}
		objs = append(objs, o)
		s.origins[o.Key()] = po.Origin
	}
	if len(errs) > 0 {
		// Refusing to start beats silently dropping accepted config, e.g.
		// when a kind's package was not registered with NewKinds.
		return nil, fmt.Errorf("config store: cannot read %s: %w", s.path, errs)
	}
	sn, ws, verr := s.kinds.prepare(nil, objs, nil)
	if sn == nil {
		return nil, fmt.Errorf("config store: %s: %w", s.path, verr)
	}
	var fe FieldErrors
	if errors.As(verr, &fe) {
		// Accepted earlier under other rules or other kinds' validators:
		// keep serving it, but say so.
		for _, e := range fe {
			s.logger.Warn("stored config fails current validation", "object", e.Object, "field", e.Field, "error", e.Message)
		}
	}
	sn.Version = p.Version
	s.logger.Info("config loaded", "file", s.path, "version", sn.Version, "objects", len(sn.Objects), "analysis_warnings", len(ws))
	return sn, nil
}

// Kinds is the registry the store parses with.
func (s *Store) Kinds() *Kinds { return s.kinds }

// Snapshot returns the current snapshot. It is never nil.
func (s *Store) Snapshot() *Snapshot { return s.cur.Load() }

// Get returns one object of the current snapshot. kind may be any name
// Kinds.Lookup accepts.
func (s *Store) Get(kind, namespace, name string) (*Object, bool) {
	spec, ok := s.kinds.Lookup(kind)
	if !ok {
		return nil, false
	}
	o := s.Snapshot().Get(spec.Kind, namespace, name)
	return o, o != nil
}

// List returns the objects of one kind, or all objects for "", in key order.
func (s *Store) List(kind string) []*Object {
	sn := s.Snapshot()
	if kind == "" {
		return append([]*Object(nil), sn.Objects...)
	}
	spec, ok := s.kinds.Lookup(kind)
	if !ok {
		return nil
	}
	return sn.OfKind(spec.Kind)
}

// Origin says which source owns an object: SourceAPI or "dir:FILE".
func (s *Store) Origin(kind, namespace, name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.origins[kind+"/"+namespace+"/"+name]
}

// Apply validates and stores a batch from the API: all objects or none.
// Validation failures are FieldErrors (or *TooManyErrors). The warnings
// are the analysis findings of the batch (see Kinds.Validate); they do not
// stop it.
func (s *Store) Apply(ctx context.Context, objs []*Object) (*Snapshot, Warnings, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ownedElsewhere(objs); err != nil {
		s.changes.WithLabelValues(SourceAPI, "invalid").Inc()
		return nil, nil, err
	}
	origins := map[string]string{}
	for _, o := range objs {
		origins[o.Key()] = SourceAPI
	}
	return s.commit(ctx, SourceAPI, objs, origins, nil)
}

// Check runs every check Apply would, against the current config, without
// changing anything: a dry run. It returns the warnings Apply would.
func (s *Store) Check(objs []*Object) (Warnings, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ownedElsewhere(objs); err != nil {
		return nil, err
	}
	objs, errs := s.kinds.unredact(s.Snapshot(), objs)
	if len(errs) > 0 {
		return nil, errs
	}
	return s.kinds.Validate(s.Snapshot(), objs)
}

// Analysis is the analysis of the current config: its version and every
// finding on it. Findings depend on hosts outside the config (KnownHost),
// so they are computed afresh.
func (s *Store) Analysis() (uint64, Warnings) {
	sn := s.Snapshot()
	return sn.Version, s.kinds.Analyze(sn)
}

// ownedElsewhere refuses API changes to objects another source owns.
// s.mu is held.
func (s *Store) ownedElsewhere(objs []*Object) error {
	var errs errorList
	for _, o := range objs {
		if origin, ok := s.origins[o.Key()]; ok && origin != SourceAPI {
			errs.add(FieldError{Object: o.Key(), Message: fmt.Sprintf("owned by %s; change it there", DescribeOrigin(origin))})
		}
	}
	return errs.err(false)
}

// Delete removes one object owned by the API. Removing an object other
// objects depend on (a DestinationRule whose subsets a VirtualService
// routes to) is allowed, as in Istio; the warnings name the objects it
// leaves with dangling references.
func (s *Store) Delete(ctx context.Context, kind, namespace, name string) (*Snapshot, Warnings, error) {
	spec, ok := s.kinds.Lookup(kind)
	if !ok {
		return nil, nil, fmt.Errorf("delete %s %s/%s: unknown kind: %w", kind, namespace, name, ErrNotFound)
	}
	key := spec.Kind + "/" + namespace + "/" + name
	s.mu.Lock()
	defer s.mu.Unlock()
	origin, ok := s.origins[key]
	if !ok {
		return nil, nil, fmt.Errorf("delete %s: %w", key, ErrNotFound)
	}
	if origin != SourceAPI {
		return nil, nil, fmt.Errorf("delete %s: %w: %s defines it; remove it there", key, ErrOwned, DescribeOrigin(origin))
	}
	return s.commit(ctx, SourceAPI, nil, nil, map[string]bool{key: true})
}

// replaceSource makes the objects of one source (e.g. "dir") exactly objs:
// objects the source owned and no longer defines are removed, and objs
// take over keys from any other source. origins maps each key to its
// origin ("dir:reviews.yaml").
func (s *Store) replaceSource(ctx context.Context, source string, objs []*Object, origins map[string]string) (*Snapshot, Warnings, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	remove := map[string]bool{}
	for key, origin := range s.origins {
		if originSource(origin) == source {
			remove[key] = true
		}
	}
	for _, o := range objs {
		delete(remove, o.Key())
		if prev, ok := s.origins[o.Key()]; ok && originSource(prev) != source {
			s.logger.Warn("config source takes over object", "object", o.Key(), "from", prev, "to", origins[o.Key()])
		}
	}
	return s.commit(ctx, source, objs, origins, remove)
}

func originSource(origin string) string {
	src, _, _ := strings.Cut(origin, ":")
	return src
}

// commit validates, persists and publishes one change, and returns the
// change's analysis warnings. s.mu is held.
func (s *Store) commit(ctx context.Context, source string, batch []*Object, origins map[string]string, remove map[string]bool) (*Snapshot, Warnings, error) {
	cur := s.Snapshot()
	// Secrets shown as Redacted and applied back keep their stored values.
	batch, errs := s.kinds.unredact(cur, batch)
	if len(errs) > 0 {
		s.changes.WithLabelValues(source, "invalid").Inc()
		return nil, nil, errs
	}
	if s.unchanged(cur, batch, origins, remove) {
		s.changes.WithLabelValues(source, "unchanged").Inc()
		// Re-applying is how users check a fix landed elsewhere: say what
		// is still wrong with the objects they sent.
		var ws Warnings
		for _, o := range batch {
			ws = append(ws, s.kinds.analyzeOne(o, cur)...)
		}
		sortWarnings(ws)
		return cur, ws, nil
	}
	next, ws, err := s.kinds.prepare(cur, batch, remove)
	if err != nil {
		s.changes.WithLabelValues(source, "invalid").Inc()
		return nil, nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, fmt.Errorf("apply config: %w", err)
	}
	next.Version = cur.Version + 1
	newOrigins := make(map[string]string, len(next.Objects))
	for _, o := range next.Objects {
		key := o.Key()
		if origin, ok := origins[key]; ok {
			newOrigins[key] = origin
		} else {
			newOrigins[key] = s.origins[key]
		}
	}
	if source == SourceAPI && s.sharing != nil {
		// Shared with the other replicas before it is served here, as it
		// is persisted before it is pushed.
		if err := s.sharing.record(ctx, apiObjects(batch, origins), slices.Sorted(stdmaps.Keys(remove))); err != nil {
			s.changes.WithLabelValues(source, "error").Inc()
			return nil, nil, err
		}
	}
	if err := s.persist(next, newOrigins); err != nil {
		if source == SourceAPI && s.sharing != nil {
			// The other replicas take it: so will this one, from the log.
			s.sharing.forget(batch, remove)
		}
		s.changes.WithLabelValues(source, "error").Inc()
		return nil, nil, err
	}
	prevOrigins := s.origins
	s.origins = newOrigins
	s.cur.Store(next)
	s.version.Set(float64(next.Version))
	s.objects.Set(float64(len(next.Objects)))
	s.changes.WithLabelValues(source, "applied").Inc()
	// Recorded before it is published: the trail has a change before
	// whatever it causes (a rollout starting).
	// A change taken from another replica is in the trail the replica that
	// took it wrote, in the same ClickHouse.
	if s.auditor != nil && source != sourceShared {
		s.auditor(ctx, s.changeOf(cur, next, prevOrigins, newOrigins))
	}
	s.publish(next)
	return next, ws, nil
}

// unchanged reports whether a change would leave the config as it is, so
// that re-reading an untouched config dir pushes nothing.
func (s *Store) unchanged(cur *Snapshot, batch []*Object, origins map[string]string, remove map[string]bool) bool {
	for key := range remove {
		if cur.getKey(key) != nil {
			return false
		}
	}
	for _, o := range batch {
		old := cur.getKey(o.Key())
		if old == nil || !sameObject(old, o) || s.origins[o.Key()] != origins[o.Key()] {
			return false
		}
	}
	return true
}

func (sn *Snapshot) getKey(key string) *Object {
	parts := strings.SplitN(key, "/", 3)
	if len(parts) != 3 {
		return nil
	}
	return sn.Get(parts[0], parts[1], parts[2])
}

func sameObject(a, b *Object) bool {
	if a.APIVersion != b.APIVersion || !reflect.DeepEqual(a.Meta, b.Meta) {
		return false
	}
	pa, aok := a.Spec.(proto.Message)
	pb, bok := b.Spec.(proto.Message)
	if aok && bok {
		return proto.Equal(pa, pb)
	}
	return reflect.DeepEqual(a.Spec, b.Spec)
}

// persist writes the snapshot durably: a temp file in the same directory,
// fsynced, renamed over the state file, and the directory fsynced so the
// rename itself survives a crash.
func (s *Store) persist(sn *Snapshot, origins map[string]string) error {
	p := persisted{Version: sn.Version, Objects: make([]persistedObject, 0, len(sn.Objects))}
	for _, o := range sn.Objects {
		b, err := json.Marshal(o)
		if err != nil {
			return fmt.Errorf("persist config: %w", err)
		}
		p.Objects = append(p.Objects, persistedObject{Origin: origins[o.Key()], Object: b})
	}
	data, err := json.MarshalIndent(p, "", " ")
	if err != nil {
		return fmt.Errorf("persist config: %w", err)
	}
	if err := atomicfile.Write(s.path, data); err != nil {
		return fmt.Errorf("persist config: %w", err)
	}
	return nil
}

// Watch returns a channel that receives the current snapshot at once and
// then every newer one. A slow reader never blocks the store: the channel
// holds only the latest snapshot, older unread ones are dropped. The
// channel is closed when ctx ends.
func (s *Store) Watch(ctx context.Context) <-chan *Snapshot {
	ch := make(chan *Snapshot, 1)
	s.wmu.Lock()
	ch <- s.Snapshot()
	s.watchers[ch] = struct{}{}
	s.wmu.Unlock()
	go func() {
		<-ctx.Done()
		s.wmu.Lock()
		delete(s.watchers, ch)
		close(ch)
		s.wmu.Unlock()
	}()
	return ch
}

// Subscribe calls fn, from one goroutine of its own, with the current
// snapshot and then with newer ones, latest-wins like Watch. cancel stops
// it; a call in progress finishes.
func (s *Store) Subscribe(fn func(*Snapshot)) (cancel func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := s.Watch(ctx)
	go func() {
		for sn := range ch {
			fn(sn)
		}
	}()
	return cancel
}

func (s *Store) publish(sn *Snapshot) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	for ch := range s.watchers {
		// Only this function sends, under wmu: after draining, the send
		// cannot block.
		select {
		case <-ch:
		default:
		}
		ch <- sn
	}
}

// Change is one accepted change to the config, for the audit trail.
type Change struct {
	Version uint64 // the config version it produced
	Objects []ObjectChange
}

// ObjectChange is what a change did to one object. Before and After are
// redacted (secrets shown as Redacted); one of them is nil for a create or
// a delete.
type ObjectChange struct {
	Action        string // "create", "update", "delete"
	Before, After *Object
	// Origin is where the object is defined now (or was, when deleted):
	// "api", "dir:FILE", "kubernetes:...".
	Origin string
}

// SetAuditor has fn told of every accepted change, with the ctx of the call
// that made it (which may name who made it). fn is called with the store's
// change lock held: it must not block.
func (s *Store) SetAuditor(fn func(context.Context, Change)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.auditor = fn
}

// changeOf compares two snapshots. s.mu is held.
func (s *Store) changeOf(prev, next *Snapshot, prevOrigins, origins map[string]string) Change {
	c := Change{Version: next.Version}
	before := map[string]*Object{}
	for _, o := range prev.Objects {
		before[o.Key()] = o
	}
	for _, o := range next.Objects {
		b, ok := before[o.Key()]
		delete(before, o.Key())
		switch {
		case !ok:
			c.Objects = append(c.Objects, ObjectChange{Action: "create", After: s.kinds.Redact(o), Origin: origins[o.Key()]})
		case b != o: // objects the change did not touch are the same pointer
			rb, ro := s.kinds.Redact(b), s.kinds.Redact(o)
			jb, errB := json.Marshal(rb)
			jo, errO := json.Marshal(ro)
			if errB == nil && errO == nil && bytes.Equal(jb, jo) && prevOrigins[o.Key()] == origins[o.Key()] {
				continue // sent again as it was (a config dir read again)
			}
			c.Objects = append(c.Objects, ObjectChange{Action: "update", Before: rb, After: ro, Origin: origins[o.Key()]})
		}
	}
	for key, b := range before {
		c.Objects = append(c.Objects, ObjectChange{Action: "delete", Before: s.kinds.Redact(b), Origin: prevOrigins[key]})
	}
	return c
}
