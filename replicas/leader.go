package replicas

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// ElectionConfig names the Lease and its timing (client-go's defaults are
// those of kube-controller-manager: 15 s, 10 s, 2 s).
type ElectionConfig struct {
	Namespace, Name string
	// Address is this replica's HTTP address as the others reach it; the
	// Lease's holder names it, so followers can say who leads.
	Address       string
	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration
}

// Validate names the first bad field.
func (c ElectionConfig) Validate() error {
	switch {
	case c.Name == "":
		return errors.New("--leader-elect-lease: want NAMESPACE/NAME")
	case c.LeaseDuration <= c.RenewDeadline:
		return fmt.Errorf("--leader-elect-lease-duration %v must be longer than --leader-elect-renew-deadline %v", c.LeaseDuration, c.RenewDeadline)
	case c.RenewDeadline <= c.RetryPeriod:
		return fmt.Errorf("--leader-elect-renew-deadline %v must be longer than --leader-elect-retry-period %v", c.RenewDeadline, c.RetryPeriod)
	case c.RetryPeriod <= 0:
		return errors.New("--leader-elect-retry-period must be positive")
	}
	return nil
}

// Elector holds a coordination.k8s.io Lease for this replica when it can,
// with client-go's leaderelection: while it holds it, lead runs; when the
// Lease is lost (not renewed within the renew deadline, so before another
// replica may take it) lead's context ends, and the replica campaigns
// again. A clean stop releases the Lease, so another replica takes over at
// once; a killed leader's Lease expires after the lease duration.
type Elector struct {
	cfg      ElectionConfig
	client   kubernetes.Interface
	identity string
	logger   *slog.Logger

	mu     sync.Mutex
	leader string // the holder's address
	is     bool

	leading prometheus.Gauge
	changes prometheus.Counter
}

// NewElector builds an elector; instance makes the Lease holder's identity
// unique even if two replicas were given one address.
func NewElector(cfg ElectionConfig, client kubernetes.Interface, instance string, logger *slog.Logger, reg prometheus.Registerer) (*Elector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	e := &Elector{cfg: cfg, client: client, identity: cfg.Address + "_" + instance, logger: logger,
		leading: prometheus.NewGauge(prometheus.GaugeOpts{Name: "meshlens_leader",
			Help: "1 while this replica holds the leader Lease (runs rollouts, alert rules and status writes), else 0."}),
		changes: prometheus.NewCounter(prometheus.CounterOpts{Name: "meshlens_leader_changes_total",
			Help: "Changes of the leader Lease's holder seen by this replica."}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{e.leading, e.changes} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("leader election: register metrics: %w", err)
			}
		}
	}
	return e, nil
}

// Leader is the HTTP address of the Lease's holder, "" when none is known.
func (e *Elector) Leader() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.leader
}

// IsLeader says whether this replica holds the Lease.
func (e *Elector) IsLeader() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.is
}

// Run campaigns until ctx ends; lead runs while this replica leads, and
// follow runs (with the leader's address, "" if unknown) whenever it does
// not, and each time the leader changes.
func (e *Elector) Run(ctx context.Context, lead func(context.Context), follow func(leader string)) error {
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: e.cfg.Namespace, Name: e.cfg.Name},
		Client:     e.client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: e.identity},
	}
	follow("")
	// A new term's lead waits for the last term's to return.
	var leadMu sync.Mutex
	for ctx.Err() == nil {
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:            lock,
			Name:            "meshlens",
			LeaseDuration:   e.cfg.LeaseDuration,
			RenewDeadline:   e.cfg.RenewDeadline,
			RetryPeriod:     e.cfg.RetryPeriod,
			ReleaseOnCancel: true,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(ctx context.Context) {
					leadMu.Lock()
					defer leadMu.Unlock()
					if ctx.Err() != nil {
						return
					}
					e.set(e.cfg.Address, true)
					e.logger.Info("leader: this replica holds the Lease; it runs rollouts and alert rules", "lease", e.cfg.Namespace+"/"+e.cfg.Name)
					lead(ctx)
				},
				OnStoppedLeading: func() {
					e.set("", false)
					e.logger.Warn("leader: this replica lost or released the Lease; it stops acting", "lease", e.cfg.Namespace+"/"+e.cfg.Name)
					follow("")
				},
				OnNewLeader: func(identity string) {
					if identity == e.identity {
						return
					}
					addr := identity
					if i := strings.LastIndex(identity, "_"); i >= 0 {
						addr = identity[:i]
					}
					e.set(addr, false)
					e.logger.Info("leader: another replica holds the Lease", "leader", addr)
					follow(addr)
				},
			},
		})
		if err != nil {
			return fmt.Errorf("leader election: %w", err)
		}
		le.Run(ctx) // returns when leadership is lost or ctx ends
	}
	return nil
}

func (e *Elector) set(leader string, is bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if leader != e.leader {
		e.changes.Inc()
	}
	e.leader, e.is = leader, is
	if is {
		e.leading.Set(1)
	} else {
		e.leading.Set(0)
	}
}
