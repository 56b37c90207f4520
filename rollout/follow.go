package rollout

import (
	"context"
	"errors"
	"fmt"
)

// FollowRoutes is how a replica that does not act serves the rollouts of
// the meshlens provider: the acting replica writes their VirtualServices
// into its own config store, which the others do not share, so each other
// replica writes, from the state Restore took (status.engine), the routes
// of the weights last applied into its own store, and its xDS server
// pushes them to the proxies connected to it. A rollout whose spec in this
// replica's config differs from the one the state was made for is left
// until the config catches up. An identical write changes nothing.
func (e *Engine) FollowRoutes(ctx context.Context) error {
	if e.acting.Load() {
		return nil
	}
	sn := e.store.Snapshot()
	specs := map[string]*Spec{}
	for _, o := range sn.OfKind(Kind) {
		if s, ok := o.Spec.(*Spec); ok {
			specs[o.Meta.Namespace+"/"+o.Meta.Name] = s
		}
	}
	type write struct {
		t Target
		w Weights
	}
	var writes []write
	for key, st := range *e.view.Load() {
		spec := specs[key]
		if st.Applied == nil || (st.Provider != ProviderMeshlens && st.Provider != "") || st.VirtualService == "" ||
			spec == nil || specHash(spec) != st.SpecHash {
			continue
		}
		writes = append(writes, write{Target{Namespace: st.Namespace, Name: st.Name, Spec: spec, VirtualService: st.VirtualService}, *st.Applied})
	}
	var errs []error
	for _, w := range writes {
		if _, err := (storeTraffic{e}).Apply(ctx, w.t, nil, w.w); err != nil {
			errs = append(errs, fmt.Errorf("rollout %s: routes of the leader's weights: %w", w.t.Owner(), err))
		}
	}
	return errors.Join(errs...)
}

// Follow is Restore for a replica that only follows the acting one: states
// are every rollout the acting replica runs, so the rollouts this replica
// knows and states lack (deleted there) are forgotten.
func (e *Engine) Follow(ctx context.Context, states []Status) error {
	if err := e.Restore(ctx, states); err != nil {
		return err
	}
	keep := map[string]bool{}
	for _, st := range states {
		keep[st.Namespace+"/"+st.Name] = true
	}
	e.mu.Lock()
	var drop []string
	for key := range e.runs {
		if !keep[key] {
			drop = append(drop, key)
		}
	}
	e.mu.Unlock()
	var seq uint64
	for _, key := range drop {
		r, err := e.acquire(ctx, key)
		if err != nil {
			return fmt.Errorf("rollout engine: follow: %w", err)
		}
		if r == nil {
			continue
		}
		seq = e.remove(r)
		r.unlock()
	}
	if seq != 0 {
		e.writeState(seq)
	}
	return nil
}
