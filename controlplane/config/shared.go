package config

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	stdmaps "maps" // a test of this package declares maps
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshlens/meshlens/internal/atomicfile"
	"github.com/meshlens/meshlens/store"
)

// OutboxFile is the file, under the data dir, that holds this replica's
// config changes the shared log has not taken yet.
const OutboxFile = "config-outbox.json"

// sourceShared labels the changes a replica takes from the shared log, in
// meshlens_config_changes_total.
const sourceShared = "shared"

// SharedLog is where replicas share the config applied through the REST
// API: ClickHouse's config_log (store.Store).
type SharedLog interface {
	AppendConfig(ctx context.Context, rows []store.ConfigRow) error
	ConfigSince(ctx context.Context, since uint64) ([]store.ConfigRow, error)
}

// Sharing makes the config applied through the REST API (and the CLI, and
// the rollouts of the meshlens traffic provider) on any replica the config
// of every replica, outside Kubernetes, where the CRDs would be the shared
// source. Each change of an object is a row of the shared log with a
// revision: a hybrid logical clock, the wall clock in nanoseconds but
// always above every revision the replica has seen, so a change made after
// seeing another orders after it whatever the clocks say. For each object
// the highest revision wins (equal ones: the greater replica address); a
// delete is a row too (a tombstone), so a replica that was down while an
// object was created and deleted deletes it too.
//
// A change is written to the log before the store persists and publishes
// it. When the log cannot be written, the change is queued in OutboxFile
// (fsynced) and applied here anyway; Run writes the queue once the log is
// back, and the change then orders by the revision it got when made. Run
// reads the log every second (the changes since the last revision seen,
// less a minute for writes that land late) and applies other replicas'
// changes to this replica's store; at start, after the log was unreachable
// and every five minutes it reads the whole log. A read that fails changes
// nothing here: the replica serves what it has.
//
// Objects another source defines on this replica (the config dir) keep
// winning there, as in one replica.
type Sharing struct {
	store      *Store
	log        SharedLog
	replica    string
	outboxPath string
	logger     *slog.Logger

	interval, lookback, fullEvery, writeTimeout time.Duration

	mu       sync.Mutex // guards what follows; taken under store.mu when both are
	seen     map[string]stamp
	maxRev   uint64
	pending  []store.ConfigRow
	failErr  error // the last failure to read or write the log; nil once one succeeds
	failFrom time.Time

	firstRead chan struct{} // closed after the first attempt to read the whole log

	pendingG   prometheus.Gauge
	errs       *prometheus.CounterVec
	taken      *prometheus.CounterVec
	lastReadTS prometheus.Gauge
}

// stamp orders changes of one object.
type stamp struct {
	rev     uint64
	replica string
}

func (a stamp) after(b stamp) bool {
	return a.rev > b.rev || (a.rev == b.rev && a.replica > b.replica)
}

// SharingOptions configure Sharing.
type SharingOptions struct {
	// DataDir holds OutboxFile. Required.
	DataDir string
	// Replica names this replica in the log (its advertised address).
	Replica string
	// Interval is how often the log is read; default 1s.
	Interval time.Duration
}

// NewSharing shares st's API config through log. It reads the changes a
// previous run queued; Run does the rest.
func NewSharing(st *Store, log SharedLog, opts SharingOptions, logger *slog.Logger, reg prometheus.Registerer) (*Sharing, error) {
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	sh := &Sharing{store: st, log: log, replica: opts.Replica, outboxPath: filepath.Join(opts.DataDir, OutboxFile),
		logger:   logger.With("component", "shared config"),
		interval: opts.Interval, lookback: time.Minute, fullEvery: 5 * time.Minute, writeTimeout: 2 * time.Second,
		seen: map[string]stamp{}, firstRead: make(chan struct{}),
		pendingG: prometheus.NewGauge(prometheus.GaugeOpts{Name: "meshlens_config_shared_pending",
			Help: "Config changes of this replica queued on disk (config-outbox.json) until the shared config log takes them."}),
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshlens_config_shared_errors_total",
			Help: "Failed reads and writes of the shared config log (ClickHouse config_log), by op (read, write)."}, []string{"op"}),
		taken: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meshlens_config_shared_taken_total",
			Help: "Object changes taken from other replicas through the shared config log, by result (applied, refused, skipped: another source defines the object here)."}, []string{"result"}),
		lastReadTS: prometheus.NewGauge(prometheus.GaugeOpts{Name: "meshlens_config_shared_last_read_timestamp_seconds",
			Help: "When the shared config log was last read."}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{sh.pendingG, sh.errs, sh.taken, sh.lastReadTS} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("shared config: register metrics: %w", err)
			}
		}
	}
	data, err := os.ReadFile(sh.outboxPath)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("shared config: %w", err)
	default:
		if err := json.Unmarshal(data, &sh.pending); err != nil {
			return nil, fmt.Errorf("shared config: %s is corrupt: %w", sh.outboxPath, err)
		}
		for _, r := range sh.pending {
			sh.see(r)
		}
		sh.pendingG.Set(float64(len(sh.pending)))
	}
	st.mu.Lock()
	st.sharing = sh
	st.mu.Unlock()
	return sh, nil
}

// see notes r as known here. sh.mu is held.
func (sh *Sharing) see(r store.ConfigRow) {
	s := stamp{r.Revision, r.Replica}
	if cur, ok := sh.seen[r.Key]; !ok || s.after(cur) {
		sh.seen[r.Key] = s
	}
	sh.maxRev = max(sh.maxRev, r.Revision)
}

// record writes one change made here to the log, or queues it. The store's
// mu is held: changes are recorded in the order they are made.
func (sh *Sharing) record(ctx context.Context, objs []*Object, removed []string) error {
	if len(objs)+len(removed) == 0 {
		return nil
	}
	sh.mu.Lock()
	rev := max(uint64(time.Now().UnixNano()), sh.maxRev+1)
	sh.maxRev = rev
	failing := sh.failErr != nil
	sh.mu.Unlock()
	rows := make([]store.ConfigRow, 0, len(objs)+len(removed))
	for _, o := range objs {
		b, err := json.Marshal(o)
		if err != nil {
			return fmt.Errorf("share %s: %w", o.Key(), err)
		}
		rows = append(rows, store.ConfigRow{Key: o.Key(), Revision: rev, Replica: sh.replica, Object: string(b)})
	}
	for _, key := range removed {
		rows = append(rows, store.ConfigRow{Key: key, Revision: rev, Replica: sh.replica, Deleted: true})
	}
	var err error
	if !failing {
		// A change must not wait long on the log: it is queued instead.
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sh.writeTimeout)
		err = sh.log.AppendConfig(wctx, rows)
		cancel()
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if failing || err != nil {
		next := append(append([]store.ConfigRow(nil), sh.pending...), rows...)
		if werr := atomicfile.WriteJSON(sh.outboxPath, next); werr != nil {
			return fmt.Errorf("config change not shared with the other replicas (%v) and not queued: %w", err, werr)
		}
		sh.pending = next
		sh.pendingG.Set(float64(len(next)))
		if err != nil {
			sh.errs.WithLabelValues("write").Inc()
			sh.failed(err)
		}
		sh.logger.Warn("shared config log unreachable: the change is applied here and queued until the log takes it", "objects", len(rows), "queued", len(next), "err", sh.failErr)
	}
	for _, r := range rows {
		sh.see(r)
	}
	return nil
}

// forget drops what record noted of a change the store then failed to
// persist: the log has it, so this replica takes it from there.
func (sh *Sharing) forget(objs []*Object, remove map[string]bool) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for _, o := range objs {
		delete(sh.seen, o.Key())
	}
	for key := range remove {
		delete(sh.seen, key)
	}
}

// failed notes a failure to reach the log. sh.mu is held.
func (sh *Sharing) failed(err error) {
	if sh.failErr == nil {
		sh.failFrom = time.Now()
	}
	sh.failErr = err
}

// Health says, when the log cannot be reached, since when and what that
// means; "" when it can.
func (sh *Sharing) Health() string {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.failErr == nil {
		return ""
	}
	return fmt.Sprintf("shared config log unreachable for %s (%s): config applied on other replicas is not taken here until it is back, and %d changes of this replica wait on disk to be shared",
		time.Since(sh.failFrom).Round(time.Second), firstLine(sh.failErr), len(sh.pending))
}

// FirstRead is closed once Run has tried to read the whole log and apply
// it: unless Health then names a failure, this replica's config has caught
// up with the others'.
func (sh *Sharing) FirstRead() <-chan struct{} { return sh.firstRead }

// Run writes what is queued and takes the other replicas' changes, every
// Interval, until ctx ends.
func (sh *Sharing) Run(ctx context.Context) error {
	var lastFull time.Time
	t := time.NewTicker(sh.interval)
	defer t.Stop()
	for {
		full := lastFull.IsZero() || time.Since(lastFull) >= sh.fullEvery
		if err := sh.Sync(ctx, full); err != nil {
			lastFull = time.Time{} // read everything once it is back
		} else if full {
			lastFull = time.Now()
		}
		select {
		case <-sh.firstRead:
		default:
			close(sh.firstRead)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Sync writes the queued changes, then reads the log (all of it when full)
// and applies the changes it has not seen.
func (sh *Sharing) Sync(ctx context.Context, full bool) error {
	if err := sh.flush(ctx); err != nil {
		return err
	}
	sh.mu.Lock()
	since := uint64(0)
	if !full && sh.maxRev > uint64(sh.lookback) {
		since = sh.maxRev - uint64(sh.lookback)
	}
	sh.mu.Unlock()
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	rows, err := sh.log.ConfigSince(rctx, since)
	cancel()
	sh.mu.Lock()
	if err != nil {
		sh.errs.WithLabelValues("read").Inc()
		if sh.failErr == nil {
			sh.logger.Warn("shared config log unreachable: this replica serves the config it has; changes applied on other replicas are not taken until it is back", "err", err)
		}
		sh.failed(err)
		sh.mu.Unlock()
		return err
	}
	if sh.failErr != nil {
		sh.logger.Info("shared config log reachable again", "after", time.Since(sh.failFrom).Round(time.Second))
		sh.failErr = nil
	}
	sh.lastReadTS.SetToCurrentTime()
	sh.mu.Unlock()

	winners := map[string]store.ConfigRow{}
	for _, r := range rows {
		if w, ok := winners[r.Key]; !ok || (stamp{r.Revision, r.Replica}).after(stamp{w.Revision, w.Replica}) {
			winners[r.Key] = r
		}
	}
	return sh.store.takeShared(ctx, sh, winners, full)
}

// flush writes the queued changes to the log.
func (sh *Sharing) flush(ctx context.Context) error {
	sh.mu.Lock()
	rows := sh.pending
	sh.mu.Unlock()
	if len(rows) == 0 {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err := sh.log.AppendConfig(wctx, rows)
	cancel()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if err != nil {
		sh.errs.WithLabelValues("write").Inc()
		sh.failed(err)
		return err
	}
	// record may have queued more meanwhile, after these.
	rest := append([]store.ConfigRow(nil), sh.pending[len(rows):]...)
	if len(rest) == 0 {
		if err := os.Remove(sh.outboxPath); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("shared config: %w", err)
		}
	} else if err := atomicfile.WriteJSON(sh.outboxPath, rest); err != nil {
		return fmt.Errorf("shared config: %w", err)
	}
	sh.pending = rest
	sh.pendingG.Set(float64(len(rest)))
	sh.logger.Info("queued config changes written to the shared config log", "objects", len(rows))
	return nil
}

// takeShared applies the winning changes of the shared log this replica
// has not seen. With full (winners are the whole log), API objects of this
// replica the log has never had (applied before the replicas shared
// config) are written to it.
func (s *Store) takeShared(ctx context.Context, sh *Sharing, winners map[string]store.ConfigRow, full bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var (
		batch   []*Object
		origins = map[string]string{}
		remove  = map[string]bool{}
		seeds   []*Object
	)
	sh.mu.Lock()
	for _, key := range slices.Sorted(stdmaps.Keys(winners)) {
		w := winners[key]
		ws := stamp{w.Revision, w.Replica}
		cur, seen := sh.seen[key]
		// A change seen before is taken again by a full read, in case
		// this replica lacks it (the config dir held the object then and
		// has let go of it since); a newer change of this replica's own
		// (queued) is kept.
		if seen && (cur.after(ws) || (!full && cur == ws)) {
			continue
		}
		fresh := !seen || ws.after(cur)
		sh.see(w)
		origin, exists := s.origins[key]
		if exists && origin != SourceAPI {
			if fresh {
				sh.taken.WithLabelValues("skipped").Inc()
				sh.logger.Info("shared config: another source defines this object here and wins", "object", key, "source", DescribeOrigin(origin))
			}
			continue
		}
		if w.Deleted {
			if exists {
				remove[key] = true
			}
			continue
		}
		var top map[string]json.RawMessage
		o, errs := (*Object)(nil), FieldErrors(nil)
		if err := json.Unmarshal([]byte(w.Object), &top); err != nil {
			errs = FieldErrors{{Object: key, Message: "shared config row is not JSON: " + err.Error()}}
		} else if o, errs = s.kinds.parseObject("shared "+key, top); len(errs) == 0 && o.Key() != key {
			errs = FieldErrors{{Object: key, Message: "shared config row holds " + o.Key()}}
		}
		if len(errs) > 0 {
			if fresh {
				sh.taken.WithLabelValues("refused").Inc()
				sh.logger.Error("shared config: a change from another replica is refused here", "object", key, "replica", w.Replica, "error", errs.Error())
			}
			continue
		}
		if old := s.Snapshot().getKey(key); old != nil && sameObject(old, o) {
			continue // served as it is
		}
		batch = append(batch, o)
		origins[key] = SourceAPI
	}
	if full {
		for _, o := range s.Snapshot().Objects {
			key := o.Key()
			if _, inLog := winners[key]; !inLog && s.origins[key] == SourceAPI {
				if _, ok := sh.seen[key]; !ok {
					seeds = append(seeds, o)
				}
			}
		}
	}
	sh.mu.Unlock()

	if len(batch)+len(remove) > 0 {
		_, _, err := s.commit(ctx, sourceShared, batch, origins, remove)
		var fe FieldErrors
		if errors.As(err, &fe) {
			// One object this replica refuses does not hold up the rest.
			err = nil
			for _, o := range batch {
				if _, _, oerr := s.commit(ctx, sourceShared, []*Object{o}, map[string]string{o.Key(): SourceAPI}, nil); oerr != nil {
					sh.taken.WithLabelValues("refused").Inc()
					sh.logger.Error("shared config: a change from another replica is refused here", "object", o.Key(), "error", oerr)
					continue
				}
				sh.taken.WithLabelValues("applied").Inc()
			}
			if len(remove) > 0 {
				if _, _, rerr := s.commit(ctx, sourceShared, nil, nil, remove); rerr != nil {
					err = rerr
				} else {
					sh.taken.WithLabelValues("applied").Add(float64(len(remove)))
				}
			}
		} else if err == nil {
			sh.taken.WithLabelValues("applied").Add(float64(len(batch) + len(remove)))
		}
		if err != nil {
			// Not persisted here: taken again at the next full read.
			sh.forget(batch, remove)
			return fmt.Errorf("shared config: apply other replicas' changes: %w", err)
		}
		sh.logger.Info("shared config: took other replicas' changes", "objects", len(batch), "deleted", len(remove), "version", s.Snapshot().Version)
	}
	if len(seeds) > 0 {
		if err := sh.record(ctx, seeds, nil); err != nil {
			return err
		}
		sh.logger.Info("shared config: objects applied here before config was shared written to the log", "objects", len(seeds))
	}
	return nil
}

// apiObjects are the objects of batch whose origin is the API.
func apiObjects(batch []*Object, origins map[string]string) []*Object {
	var out []*Object
	for _, o := range batch {
		if origins[o.Key()] == SourceAPI {
			out = append(out, o)
		}
	}
	return out
}

func firstLine(err error) string {
	s := err.Error()
	for i, c := range s {
		if c == '\n' {
			return s[:i]
		}
	}
	return s
}
