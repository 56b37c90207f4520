package config

import (
	"fmt"
	"sort"
)

// Validate checks a batch as `istioctl analyze` would: every object on its
// own, and against the snapshot that applying the batch to base would give
// (base may be nil). It is what the store runs before accepting a batch
// and what `meshlens validate` runs offline. The error is FieldErrors.
func (k *Kinds) Validate(base *Snapshot, batch []*Object) error {
	_, errs := k.prepare(base, batch, nil)
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// prepare builds the snapshot that results from applying batch to base and
// removing the keys in remove, and validates it. Objects of the batch are
// checked fully; other objects only for errors the change introduces (a
// DestinationRule losing a subset a VirtualService uses), so that an object
// accepted under older rules does not block unrelated changes.
func (k *Kinds) prepare(base *Snapshot, batch []*Object, remove map[string]bool) (*Snapshot, FieldErrors) {
	var errs FieldErrors
	changed := map[string]bool{}
	for _, o := range batch {
		key := o.Key()
		if changed[key] {
			errs = append(errs, FieldError{Object: key, Message: "defined more than once in this batch"})
		}
		changed[key] = true
		if _, ok := k.spec(o.Kind); !ok {
			errs = append(errs, FieldError{Object: key, Field: "kind", Message: fmt.Sprintf("unknown kind %q", o.Kind)})
		}
	}
	if len(errs) > 0 {
		sortFieldErrors(errs)
		return nil, errs
	}
	next := &Snapshot{}
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

	type unchanged struct {
		o    *Object
		errs []FieldError // in next
	}
	var others []unchanged // unchanged objects with errors in next
	for _, o := range next.Objects {
		es := k.validateOne(o, next)
		if changed[o.Key()] {
			errs = append(errs, es...)
		} else if len(es) > 0 {
			others = append(others, unchanged{o, es})
		}
	}
	// All base validations after all next ones: validators cache per
	// snapshot, so alternating would rebuild their indexes each time.
	for _, u := range others {
		old := map[FieldError]bool{}
		for _, e := range k.validateOne(u.o, base) {
			old[e] = true
		}
		for _, e := range u.errs {
			if !old[e] {
				errs = append(errs, e)
			}
		}
	}
	sortFieldErrors(errs)
	return next, errs
}

func (k *Kinds) validateOne(o *Object, sn *Snapshot) []FieldError {
	spec, ok := k.spec(o.Kind)
	if !ok || spec.Validate == nil {
		return nil
	}
	es := spec.Validate(o, sn)
	for i := range es {
		if es[i].Object == "" {
			es[i].Object = o.Key()
		}
	}
	return es
}
