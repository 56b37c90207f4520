package config

import (
	"fmt"
	"sort"
)

// Validate checks a batch as Istio does: every object on its own, as the
// validation webhook would (the error, FieldErrors or *TooManyErrors,
// refuses the batch), and then as `istioctl analyze` would, within the
// snapshot that applying the batch to base gives (base may be nil): the
// warnings. It is what the store runs before accepting a batch and what
// `meshlens validate` runs offline.
func (k *Kinds) Validate(base *Snapshot, batch []*Object) (Warnings, error) {
	_, ws, err := k.prepare(base, batch, nil)
	if err != nil {
		return nil, err
	}
	return ws, nil
}

// Analyze reports the findings on every object of a snapshot: what `GET
// /api/v1/analysis` and `meshlens analyze` show.
func (k *Kinds) Analyze(sn *Snapshot) Warnings {
	if sn == nil {
		return nil
	}
	var out Warnings
	for _, o := range sn.Objects {
		out = append(out, k.analyzeOne(o, sn)...)
	}
	sortWarnings(out)
	return out
}

// prepare builds the snapshot that results from applying batch to base and
// removing the keys in remove. The batch's objects are validated on their
// own; objects of base were validated when they were accepted and, since
// validation looks at nothing else, are still valid. The warnings are the
// findings on the batch's objects, and the new findings on other objects
// that the change causes (a VirtualService routing to a subset that a
// DestinationRule no longer defines), so that findings that were there
// before an unrelated change are not repeated to its author.
//
// next is nil only when the batch cannot form a snapshot (an unknown kind,
// an object twice); otherwise it is returned even with errors, so that the
// store can load config that older rules accepted.
func (k *Kinds) prepare(base *Snapshot, batch []*Object, remove map[string]bool) (next *Snapshot, ws Warnings, err error) {
	var errs errorList
	changed := make(map[string]bool, len(batch))
	for _, o := range batch {
		key := o.Key()
		if changed[key] {
			errs.add(FieldError{Object: key, Message: "defined more than once in this batch"})
		}
		changed[key] = true
		if _, ok := k.spec(o.Kind); !ok {
			errs.add(FieldError{Object: key, Field: "kind", Message: fmt.Sprintf("unknown kind %q", o.Kind)})
		}
	}
	if err := errs.err(true); err != nil {
		return nil, nil, err
	}
	for _, o := range batch {
		errs.add(k.validateOne(o)...)
	}
	next = &Snapshot{}
	if base != nil {
		next.Version = base.Version
		for _, o := range base.Objects {
			if !changed[o.Key()] && !remove[o.Key()] {
				next.Objects = append(next.Objects, o)
			}
		}
	}
	next.Objects = append(next.Objects, batch...)
	sort.Slice(next.Objects, func(i, j int) bool { return next.Objects[i].Key() < next.Objects[j].Key() })
	if err := errs.err(true); err != nil {
		return next, nil, err
	}

	type unchanged struct {
		o  *Object
		ws []Warning // in next
	}
	var others []unchanged // unchanged objects with findings in next
	for _, o := range next.Objects {
		found := k.analyzeOne(o, next)
		if changed[o.Key()] {
			ws = append(ws, found...)
		} else if len(found) > 0 {
			others = append(others, unchanged{o, found})
		}
	}
	// All base analyses after all next ones: analyzers cache an index per
	// snapshot, so alternating would rebuild it each time.
	for _, u := range others {
		old := map[Warning]bool{}
		for _, w := range k.analyzeOne(u.o, base) {
			old[w] = true
		}
		for _, w := range u.ws {
			if !old[w] {
				ws = append(ws, w)
			}
		}
	}
	sortWarnings(ws)
	return next, ws, nil
}

func (k *Kinds) validateOne(o *Object) []FieldError {
	spec, ok := k.spec(o.Kind)
	if !ok || spec.Validate == nil {
		return nil
	}
	es := spec.Validate(o)
	for i := range es {
		if es[i].Object == "" {
			es[i].Object = o.Key()
		}
	}
	return es
}

func (k *Kinds) analyzeOne(o *Object, sn *Snapshot) []Warning {
	spec, ok := k.spec(o.Kind)
	if !ok || spec.Analyze == nil || sn == nil {
		return nil
	}
	ws := spec.Analyze(o, sn)
	for i := range ws {
		if ws[i].Object == "" {
			ws[i].Object = o.Key()
		}
	}
	return ws
}
