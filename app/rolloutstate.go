package app

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/meshlens/meshlens/controlplane/config"
	"github.com/meshlens/meshlens/rollout"
	"github.com/meshlens/meshlens/store"
)

// rolloutStateLog is where, outside Kubernetes, the acting replica saves
// its rollouts' state and the followers read it: ClickHouse's
// rollout_state, as the Rollout objects' status.engine is in Kubernetes.
type rolloutStateLog struct {
	st      *store.Store
	replica string

	mu   sync.Mutex
	last uint64 // the last save's time, so saves order even if the clock steps back
}

// SaveRollout is rollout.Mirror's: the engine calls it whenever a
// rollout's state changed, before it writes the routes.
func (l *rolloutStateLog) SaveRollout(ctx context.Context, s rollout.Status) error {
	b, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("save rollout %s/%s state: %w", s.Namespace, s.Name, err)
	}
	l.mu.Lock()
	at := max(uint64(time.Now().UnixNano()), l.last+1)
	l.last = at
	l.mu.Unlock()
	// A rollout step does not wait long on ClickHouse: the next change
	// saves the whole state again.
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return l.st.SaveRolloutState(ctx, store.RolloutStateRow{Key: s.Namespace + "/" + s.Name, Updated: at, Replica: l.replica, State: string(b)})
}

// states are the saved states of the rollouts cfg holds (a deleted
// Rollout's last state is left out), and the replica that saved the newest.
func (l *rolloutStateLog) states(ctx context.Context, cfg *config.Store) ([]rollout.Status, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rows, err := l.st.RolloutStates(ctx)
	if err != nil {
		return nil, "", err
	}
	var (
		out    []rollout.Status
		acting string
		newest uint64
	)
	for _, r := range rows {
		var s rollout.Status
		if err := json.Unmarshal([]byte(r.State), &s); err != nil {
			return nil, "", fmt.Errorf("rollout %s: saved state: %w", r.Key, err)
		}
		if s.Namespace+"/"+s.Name != r.Key {
			continue
		}
		if _, ok := cfg.Get(rollout.Kind, s.Namespace, s.Name); !ok {
			continue
		}
		out = append(out, s)
		if r.Updated > newest {
			newest, acting = r.Updated, r.Replica
		}
	}
	return out, acting, nil
}

// shareRollouts makes, outside Kubernetes with --peers, the followers show
// the acting replica's rollouts: it saves their state to ClickHouse and
// every follower takes it every 2 s (and names the acting replica when it
// refuses a rollout action). For the acting replica it returns what runs
// before it acts: once its config has caught up with the shared config, the
// saved state of each rollout its data dir does not hold (a new disk) is
// taken, so the rollout resumes at its state and step rather than starting
// over.
func shareRollouts(component func(func(context.Context) error), cfg replicaConfig, c *cluster, st *store.Store, cfgStore *config.Store,
	sharing *config.Sharing, rollouts *rollout.Engine, logger *slog.Logger) (before func(context.Context)) {
	if c != nil || cfg.Peers == "" || sharing == nil {
		return nil
	}
	l := &rolloutStateLog{st: st, replica: cfg.Advertise}
	if !cfg.Follower {
		rollouts.SetMirror(l)
		return func(ctx context.Context) { restoreLost(ctx, l, cfgStore, sharing, rollouts, logger) }
	}
	component(func(ctx context.Context) error {
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		var taken string // the states last taken, as JSON: the same ones are not taken (and written to disk) again
		for {
			states, acting, err := l.states(ctx, cfgStore)
			if err != nil {
				logger.Debug("follower: cannot read the rollouts' state from ClickHouse", "err", err)
			} else if b, _ := json.Marshal(states); string(b) != taken {
				rollouts.SetActing(false, acting)
				if err := rollouts.Follow(ctx, states); err != nil {
					logger.Warn("follower: cannot take the acting replica's rollout state", "err", err)
				} else {
					taken = string(b)
				}
			}
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			}
		}
	})
	return nil
}

// restoreWait bounds how long the acting replica waits for the shared
// config before it acts without the saved rollout state.
const restoreWait = 30 * time.Second

// restoreLost takes the saved state of the rollouts the engine does not
// know (see shareRollouts); it is run before the engine is.
func restoreLost(ctx context.Context, l *rolloutStateLog, cfgStore *config.Store, sharing *config.Sharing, rollouts *rollout.Engine, logger *slog.Logger) {
	select {
	case <-sharing.FirstRead():
	case <-ctx.Done():
		return
	case <-time.After(restoreWait):
		logger.Warn("rollouts run from this replica's data dir alone: the shared config was not read in time", "waited", restoreWait)
		return
	}
	if h := sharing.Health(); h != "" {
		// The data dir's state, if any, is this replica's own and
		// newest; a new disk's rollouts start over.
		logger.Info("rollouts run from this replica's data dir alone: the state saved in ClickHouse cannot be read", "reason", h)
		return
	}
	states, _, err := l.states(ctx, cfgStore)
	if err != nil {
		logger.Warn("rollouts start without the state saved in ClickHouse", "err", err)
		return
	}
	var lost []rollout.Status
	for _, s := range states {
		if _, ok := rollouts.Get(s.Namespace, s.Name); !ok {
			lost = append(lost, s)
		}
	}
	if len(lost) == 0 {
		return
	}
	rollouts.SetActing(false, "")
	err = rollouts.Restore(ctx, lost)
	rollouts.SetActing(true, "")
	if err != nil {
		logger.Warn("rollouts start without the state saved in ClickHouse", "err", err)
		return
	}
	logger.Info("rollouts this data dir lacked resume from the state saved in ClickHouse", "rollouts", len(lost))
}
