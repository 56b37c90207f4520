package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshlens/meshlens/alerting"
	"github.com/meshlens/meshlens/auth"
	"github.com/meshlens/meshlens/controlplane/kube"
	"github.com/meshlens/meshlens/controlplane/registry"
	"github.com/meshlens/meshlens/graph"
	"github.com/meshlens/meshlens/listeners"
	"github.com/meshlens/meshlens/query"
	"github.com/meshlens/meshlens/replicas"
	"github.com/meshlens/meshlens/rollout"
)

// replicaConfig is how this meshlens finds the other replicas and who acts.
type replicaConfig struct {
	Peers        string
	PeersService string
	PeerTimeout  time.Duration
	MaxClockSkew time.Duration
	PeerCA       string
	PeerName     string
	Advertise    string
	LeaderElect  bool
	Lease        string
	LeaseDur     time.Duration
	RenewDl      time.Duration
	RetryPer     time.Duration
	Follower     bool
}

func defaultReplicaConfig() replicaConfig {
	return replicaConfig{PeerTimeout: time.Second, MaxClockSkew: replicas.DefaultMaxClockSkew, LeaseDur: 15 * time.Second, RenewDl: 10 * time.Second, RetryPer: 2 * time.Second}
}

func (c *replicaConfig) registerFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Peers, "peers", c.Peers, "HTTP addresses host:port of the other meshlens replicas (this one's may be listed too): live graph reads answer for all of them")
	fs.StringVar(&c.PeersService, "peers-service", c.PeersService,
		"NAMESPACE/NAME of a headless Kubernetes Service whose ready endpoints (port named http) are the meshlens replicas; needs the cluster")
	fs.DurationVar(&c.PeerTimeout, "peer-timeout", c.PeerTimeout, "how long a merged read waits for each replica; one that does not answer is left out and the result is marked partial")
	fs.DurationVar(&c.MaxClockSkew, "peer-max-clock-skew", c.MaxClockSkew,
		"a replica whose clock is further than this from this one's (plus half the read's round trip) is left out of merged reads and named in missing: its live counts would be misplaced in time; negative: never left out")
	fs.StringVar(&c.PeerCA, "peer-ca", c.PeerCA,
		"with --tls-cert: PEM bundle the other replicas' server certificates must chain to (read again when it changes); default --tls-client-ca, else the system's roots")
	fs.StringVar(&c.PeerName, "peer-server-name", c.PeerName,
		"with --tls-cert: the name every replica's certificate must carry, checked instead of the address dialled (peers of --peers-service are pod IPs); default the address")
	fs.StringVar(&c.Advertise, "advertise", c.Advertise, "this replica's HTTP address as the other replicas reach it (the leader Lease names it); default: --http")
	fs.BoolVar(&c.LeaderElect, "leader-elect", c.LeaderElect,
		"run rollouts, alert rules and status writes only while holding a coordination.k8s.io Lease (several replicas); needs the cluster")
	fs.StringVar(&c.Lease, "leader-elect-lease", c.Lease, "NAMESPACE/NAME of the leader Lease; default: meshlens in the pod's namespace (else default)")
	fs.DurationVar(&c.LeaseDur, "leader-elect-lease-duration", c.LeaseDur, "how long a Lease that is not renewed keeps the others waiting (a killed leader's successor takes over within it)")
	fs.DurationVar(&c.RenewDl, "leader-elect-renew-deadline", c.RenewDl, "the leader stops acting when it could not renew the Lease for this long")
	fs.DurationVar(&c.RetryPer, "leader-elect-retry-period", c.RetryPer, "how often replicas try to take or renew the Lease")
	fs.BoolVar(&c.Follower, "follower", c.Follower,
		"without Kubernetes: this replica never runs rollouts or alert rules (start every replica but one with it)")
}

// validate checks the settings that need no cluster.
func (c *replicaConfig) validate(httpAddr string, tls listeners.TLSFiles) error {
	if !tls.Enabled() {
		// Replicas read each other over HTTPS exactly when they serve it.
		for _, f := range [][2]string{{"--peer-ca", c.PeerCA}, {"--peer-server-name", c.PeerName}} {
			if f[1] != "" {
				return fmt.Errorf("%s %q: replicas read each other over HTTPS only when they serve it (--tls-cert and --tls-key)", f[0], f[1])
			}
		}
	}
	for _, p := range c.peerList() {
		if _, _, err := net.SplitHostPort(p); err != nil {
			return fmt.Errorf("--peers %q: want a comma-separated list of host:port", c.Peers)
		}
	}
	if c.PeersService != "" {
		if ns, name, ok := strings.Cut(c.PeersService, "/"); !ok || ns == "" || name == "" {
			return fmt.Errorf("--peers-service %q: want NAMESPACE/NAME", c.PeersService)
		}
	}
	if c.PeerTimeout <= 0 {
		return fmt.Errorf("--peer-timeout %v: want a positive duration", c.PeerTimeout)
	}
	if c.Advertise == "" {
		c.Advertise = httpAddr
	}
	if _, _, err := net.SplitHostPort(c.Advertise); err != nil {
		return fmt.Errorf("--advertise %q: want host:port", c.Advertise)
	}
	if c.LeaderElect && c.Follower {
		return errors.New("--follower is for replicas outside Kubernetes; with --leader-elect the Lease decides")
	}
	if c.LeaderElect {
		return c.election().Validate()
	}
	return nil
}

func (c *replicaConfig) peerList() []string {
	var out []string
	for _, p := range strings.Split(c.Peers, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func (c *replicaConfig) election() replicas.ElectionConfig {
	ns, name, _ := strings.Cut(c.Lease, "/")
	if c.Lease == "" {
		ns, name = podNamespace(), "meshlens"
	}
	return replicas.ElectionConfig{Namespace: ns, Name: name, Address: c.Advertise,
		LeaseDuration: c.LeaseDur, RenewDeadline: c.RenewDl, RetryPeriod: c.RetryPer}
}

// podNamespace is the namespace of the pod meshlens runs in, else default.
func podNamespace() string {
	if b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil && len(b) > 0 {
		return strings.TrimSpace(string(b))
	}
	return "default"
}

// newReplicas builds this replica's view of all of them; without peers it
// is this replica's live graph alone.
func newReplicas(cfg replicaConfig, live *graph.Live, c *cluster, authz *auth.Authorizer, tlsFiles listeners.TLSFiles, tlsSrc *listeners.TLS,
	reload time.Duration, logger *slog.Logger, reg prometheus.Registerer) (*replicas.Replicas, error) {
	static := cfg.peerList()
	peers := func() []string { return static }
	if cfg.PeersService != "" {
		if c == nil {
			return nil, errors.New("--peers-service reads the Service's endpoints from Kubernetes: it needs the cluster (--kubeconfig, or meshlens running in a pod)")
		}
		ns, name, _ := strings.Cut(cfg.PeersService, "/")
		peers = func() []string { return append(serviceAddresses(c.registry.Snapshot(), ns, name), static...) }
	}
	opts := replicas.Options{Peers: peers, Self: []string{cfg.Advertise}, Timeout: cfg.PeerTimeout, MaxClockSkew: cfg.MaxClockSkew, Token: authz.PeerToken()}
	if tlsSrc != nil {
		opts.TLS = peerTLS(cfg, tlsFiles, tlsSrc, reload)
	}
	return replicas.New(live, opts, logger, reg)
}

// peerTLS is how a replica serving TLS reads the others: over HTTPS,
// trusting --peer-ca (else the client CA, which under mutual TLS signs the
// replicas' own certificates), showing its own certificate.
func peerTLS(cfg replicaConfig, files listeners.TLSFiles, src *listeners.TLS, reload time.Duration) *replicas.TLSOptions {
	o := &replicas.TLSOptions{CAFile: cfg.PeerCA, CAFlag: "--peer-ca", ServerName: cfg.PeerName,
		ClientCertificate: src.ClientCertificate, Reload: reload}
	if o.CAFile == "" && files.ClientCA != "" {
		o.CAFile, o.CAFlag = files.ClientCA, "--tls-client-ca (the peers' CA by default)"
	}
	return o
}

// serviceAddresses are the ready endpoints of a Service, port http.
func serviceAddresses(sn *registry.Snapshot, ns, name string) []string {
	if sn == nil {
		return nil
	}
	var out []string
	for _, s := range sn.Services {
		if s.Namespace != ns || s.Name != name {
			continue
		}
		for _, ep := range s.Endpoints {
			port, ok := ep.Ports["http"]
			if ep.Health != registry.Healthy || !ok {
				continue
			}
			out = append(out, net.JoinHostPort(ep.Address, strconv.Itoa(int(port))))
		}
	}
	return out
}

// mergedReads is what the query API reads when there are other replicas.
func mergedReads(cfg replicaConfig, r *replicas.Replicas) query.Replicas {
	if cfg.Peers == "" && cfg.PeersService == "" {
		return nil
	}
	return r
}

// alertPeers are the replicas GET /api/v1/alerts gathers alerts from.
func alertPeers(cfg replicaConfig, r *replicas.Replicas) alerting.Peers {
	if cfg.Peers == "" && cfg.PeersService == "" {
		return nil
	}
	return r
}

// acting adds to serve's run group what exactly one replica runs: the
// rollout engine, alert rules and the Kubernetes status writer. With
// --leader-elect they run while this replica holds the Lease, and a new
// leader first restores the rollouts from their objects' status; with
// --follower never; else always, after before (when not nil) returns.
func acting(component func(func(context.Context) error), cfg replicaConfig, c *cluster, reps *replicas.Replicas,
	rollouts *rollout.Engine, alerts *alerting.Alerting, before func(context.Context), logger *slog.Logger, reg prometheus.Registerer) error {
	var status *kube.StatusWriter
	if c != nil {
		status = c.status
	}
	run := func(ctx context.Context) {
		var wg sync.WaitGroup
		for _, f := range []func(context.Context) error{rollouts.Run, alerts.Run} {
			wg.Go(func() { _ = f(ctx) })
		}
		if status != nil {
			wg.Go(func() { _ = status.Run(ctx) })
		}
		wg.Wait()
	}
	switch {
	case cfg.Follower:
		rollouts.SetActing(false, "")
		logger.Info("follower: this replica does not run rollouts or alert rules (--follower)")
		return nil
	case !cfg.LeaderElect:
		component(func(ctx context.Context) error {
			if before != nil {
				before(ctx)
			}
			run(ctx)
			return nil
		})
		return nil
	case c == nil:
		return errors.New("--leader-elect holds a Lease in Kubernetes: it needs the cluster (--kubeconfig, or meshlens running in a pod); outside Kubernetes start every replica but one with --follower")
	}
	el, err := replicas.NewElector(cfg.election(), c.client, reps.ID(), logger, reg)
	if err != nil {
		return err
	}
	reps.SetLeader(el.Leader, el.IsLeader)
	rollouts.SetActing(false, "")
	rollouts.SetMirror(status)
	lead := func(ctx context.Context) {
		// The last leader's state, from the Rollouts' status, before acting.
		for ctx.Err() == nil {
			states, err := kube.RolloutStates(ctx, c.dynamic)
			if err == nil {
				err = rollouts.Restore(ctx, states)
			}
			if err == nil {
				logger.Info("leader: rollouts restored from their status", "rollouts", len(states))
				break
			}
			logger.Error("leader: cannot read the rollouts' state from Kubernetes; retrying before acting", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
		if ctx.Err() != nil {
			return
		}
		rollouts.SetActing(true, "")
		defer rollouts.SetActing(false, "")
		run(ctx)
	}
	component(func(ctx context.Context) error {
		return el.Run(ctx, lead, func(leader string) { rollouts.SetActing(false, leader) })
	})
	// A follower shows the rollouts as the leader last wrote them.
	component(func(ctx context.Context) error {
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			}
			if el.IsLeader() {
				continue
			}
			states, err := kube.RolloutStates(ctx, c.dynamic)
			if err != nil {
				logger.Debug("follower: cannot read the rollouts' state", "err", err)
				continue
			}
			if rollouts.Restore(ctx, states) != nil {
				continue // this replica just became the leader
			}
			// The meshlens provider's routes live in each replica's own
			// config: the leader's weights are written here too.
			if err := rollouts.FollowRoutes(ctx); err != nil {
				logger.Warn("follower: cannot write the leader's rollout routes into this replica's config", "err", err)
			}
		}
	})
	return nil
}
