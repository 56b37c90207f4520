package kube

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1"
	clientnetworking "istio.io/client-go/pkg/apis/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshlens/meshlens/controlplane/config"
	"github.com/meshlens/meshlens/rollout"
)

// istioTraffic is the "istio" provider: the rollout owns some HTTP routes
// of a networking.istio.io/v1 VirtualService held by the API server.
//
// Which routes it owns: the ones named as rollout.HTTPRoutes names them
// ("candidate-match", "split") that route only to the rollout's host; on
// the first write, the first route without a match that routes only to
// the host (the host's default route), which the rollout's routes replace
// in place. Every other route, host and field of the VirtualService is
// kept as it is.
type istioTraffic struct{ *Traffic }

func (p *istioTraffic) vsName(t rollout.Target) string {
	return "VirtualService " + t.Namespace + "/" + t.VirtualService
}

func (p *istioTraffic) Apply(ctx context.Context, t rollout.Target, prev *rollout.Weights, w rollout.Weights) (rollout.Written, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	// Subsets are made sure of when the rollout takes the routes over; a
	// rollback to stable never waits for them.
	if prev == nil && (w.Candidate > 0 || w.Matched) {
		if err := p.ensureSubsets(ctx, t); err != nil {
			return rollout.Written{}, err
		}
	}
	api := p.istio.NetworkingV1().VirtualServices(t.Namespace)
	for attempt := 1; ; attempt++ {
		vs, err := api.Get(ctx, t.VirtualService, metav1.GetOptions{})
		if err != nil {
			return rollout.Written{}, apiErr("read "+p.vsName(t), err)
		}
		if err := managedElsewhere(p.vsName(t), vs, t.Owner()); err != nil {
			return rollout.Written{}, err
		}
		cur := vs.Spec.GetHttp()
		want := p.merge(cur, t, w)
		if prev != nil && !routesEqual(want, cur) && !routesEqual(p.merge(cur, t, *prev), cur) {
			return rollout.Written{}, p.edited(t, cur, *prev)
		}
		if routesEqual(want, cur) && vs.Annotations[rollout.OwnerAnnotation] == t.Owner() {
			return rollout.Written{Revision: vs.ResourceVersion}, nil
		}
		vs = vs.DeepCopy()
		vs.Spec.Http = want
		markOwned(vs, t.Owner())
		out, err := api.Update(ctx, vs, metav1.UpdateOptions{FieldManager: "meshlens"})
		if apierrors.IsConflict(err) && attempt < maxConflicts {
			continue // someone wrote in between: read again, judge their change
		}
		if err != nil {
			return rollout.Written{}, apiErr(fmt.Sprintf("update %s to %s", p.vsName(t), weightsText(w)), err)
		}
		return rollout.Written{Changed: true, Revision: out.ResourceVersion}, nil
	}
}

func (p *istioTraffic) Check(ctx context.Context, t rollout.Target, applied rollout.Weights) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	vs, err := p.istio.NetworkingV1().VirtualServices(t.Namespace).Get(ctx, t.VirtualService, metav1.GetOptions{})
	if err != nil {
		return apiErr("read "+p.vsName(t), err)
	}
	if err := managedElsewhere(p.vsName(t), vs, t.Owner()); err != nil {
		return err
	}
	cur := vs.Spec.GetHttp()
	if !routesEqual(p.merge(cur, t, applied), cur) {
		return p.edited(t, cur, applied)
	}
	return nil
}

func (p *istioTraffic) Release(ctx context.Context, t rollout.Target, prev *rollout.Weights, toStable bool) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	api := p.istio.NetworkingV1().VirtualServices(t.Namespace)
	for attempt := 1; ; attempt++ {
		vs, err := api.Get(ctx, t.VirtualService, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return apiErr("read "+p.vsName(t), err)
		}
		if vs.Annotations[rollout.OwnerAnnotation] != t.Owner() {
			return nil // not (or no longer) the rollout's
		}
		vs = vs.DeepCopy()
		cur := vs.Spec.GetHttp()
		if toStable && prev != nil && routesEqual(p.merge(cur, t, *prev), cur) {
			vs.Spec.Http = p.merge(cur, t, rollout.Weights{Stable: 100})
		}
		delete(vs.Annotations, rollout.OwnerAnnotation)
		_, err = api.Update(ctx, vs, metav1.UpdateOptions{FieldManager: "meshlens"})
		if apierrors.IsConflict(err) && attempt < maxConflicts {
			continue
		}
		if err != nil {
			return apiErr("release "+p.vsName(t), err)
		}
		return nil
	}
}

// merge puts the rollout's routes for w in place of the routes it owns in
// cur (or at the end, if it owns none yet); every other route is kept, in
// order.
func (p *istioTraffic) merge(cur []*networking.HTTPRoute, t rollout.Target, w rollout.Weights) []*networking.HTTPRoute {
	owned := p.owned(cur, t)
	mine := rollout.HTTPRoutes(t.Spec, w)
	out := make([]*networking.HTTPRoute, 0, len(cur)+len(mine))
	inserted := false
	for i, r := range cur {
		if owned[i] {
			if !inserted {
				out = append(out, mine...)
				inserted = true
			}
			continue
		}
		out = append(out, r)
	}
	if !inserted {
		out = append(out, mine...)
	}
	return out
}

// owned marks the routes of cur that the rollout owns.
func (p *istioTraffic) owned(cur []*networking.HTTPRoute, t rollout.Target) map[int]bool {
	host := config.FQDN(t.Spec.Service, t.Namespace, p.domain)
	onlyHost := func(r *networking.HTTPRoute) bool {
		if len(r.GetRoute()) == 0 {
			return false
		}
		for _, d := range r.GetRoute() {
			if config.FQDN(d.GetDestination().GetHost(), t.Namespace, p.domain) != host {
				return false
			}
		}
		return true
	}
	out := map[int]bool{}
	for i, r := range cur {
		if slices.Contains(rollout.RouteNames, r.GetName()) && onlyHost(r) {
			out[i] = true
		}
	}
	if len(out) > 0 {
		return out
	}
	for i, r := range cur {
		if len(r.GetMatch()) == 0 && onlyHost(r) && r.GetRedirect() == nil && r.GetDirectResponse() == nil {
			out[i] = true // the host's default route, taken over
			break
		}
	}
	return out
}

func (p *istioTraffic) edited(t rollout.Target, cur []*networking.HTTPRoute, prev rollout.Weights) error {
	var now []string
	for i := range p.owned(cur, t) {
		for _, d := range cur[i].GetRoute() {
			now = append(now, fmt.Sprintf("%s %d", d.GetDestination().GetSubset(), d.GetWeight()))
		}
	}
	slices.Sort(now)
	return fmt.Errorf("%s no longer holds what the rollout wrote (%s); it now routes %s: %w",
		p.vsName(t), weightsText(prev), strings.Join(now, ", "), rollout.ErrEdited)
}

func routesEqual(a, b []*networking.HTTPRoute) bool {
	return slices.EqualFunc(a, b, func(x, y *networking.HTTPRoute) bool { return proto.Equal(x, y) })
}

// ensureSubsets makes sure the host has the stable and candidate subsets:
// when no DestinationRule covers the host, one is created with both
// (selecting pods by their version label), owned by the Rollout so that it
// goes with it. A DestinationRule that lacks a subset is the user's, and
// meshlens does not edit it: the rollout waits until the subset is added.
func (p *istioTraffic) ensureSubsets(ctx context.Context, t rollout.Target) error {
	api := p.istio.NetworkingV1().DestinationRules(t.Namespace)
	l, err := api.List(ctx, metav1.ListOptions{})
	if err != nil {
		return apiErr("list DestinationRules in "+t.Namespace, err)
	}
	host := config.FQDN(t.Spec.Service, t.Namespace, p.domain)
	for _, dr := range l.Items {
		if config.FQDN(dr.Spec.GetHost(), t.Namespace, p.domain) != host {
			continue
		}
		var missing []string
		for _, s := range []string{t.Spec.Stable, t.Spec.Candidate} {
			if !slices.ContainsFunc(dr.Spec.GetSubsets(), func(x *networking.Subset) bool { return x.GetName() == s }) {
				missing = append(missing, s)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("DestinationRule %s/%s of host %s has no subset %s (meshlens creates subsets only for a host without a DestinationRule): %w",
				t.Namespace, dr.Name, host, strings.Join(missing, ", "), rollout.ErrMissing)
		}
		return nil
	}
	subset := func(name string) *networking.Subset {
		return &networking.Subset{Name: name, Labels: map[string]string{"version": name}}
	}
	dr := &clientnetworking.DestinationRule{
		ObjectMeta: metav1.ObjectMeta{Name: t.Name + "-subsets", Namespace: t.Namespace,
			Annotations:     map[string]string{rollout.OwnerAnnotation: t.Owner()},
			OwnerReferences: p.rolloutOwnerRef(ctx, t.Namespace, t.Name)},
	}
	dr.Spec.Host = t.Spec.Service
	dr.Spec.Subsets = []*networking.Subset{subset(t.Spec.Stable), subset(t.Spec.Candidate)}
	if _, err := api.Create(ctx, dr, metav1.CreateOptions{FieldManager: "meshlens"}); err != nil && !apierrors.IsAlreadyExists(err) {
		return apiErr(fmt.Sprintf("create DestinationRule %s/%s with subsets %s and %s", t.Namespace, dr.Name, t.Spec.Stable, t.Spec.Candidate), err)
	}
	p.logger.Info("rollout: created the DestinationRule subsets of its host", "rollout", t.Owner(), "destinationRule", t.Namespace+"/"+dr.Name,
		"host", host, "subsets", []string{t.Spec.Stable, t.Spec.Candidate})
	return nil
}
