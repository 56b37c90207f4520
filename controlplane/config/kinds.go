package config

import (
	"fmt"
	"slices"
	"strings"
)

// KindSpec plugs one kind of object into parsing and validation. Istio's
// kinds come from IstioKinds; meshlens' own kinds (Rollout, AlertRule) are
// declared by the packages that own them and handed to NewKinds by the caller.
type KindSpec struct {
	// APIVersions accepted for the kind, e.g. "networking.istio.io/v1".
	APIVersions []string
	// Kind is the kind's name in the registry and in object keys. Where
	// two API groups have a kind of the same name (Istio's Gateway and
	// Gateway API's), the second is qualified by its group as kubectl
	// writes it ("Gateway.gateway.networking.k8s.io"): objects still say
	// "kind: Gateway" in YAML (see WireKind), their apiVersion decides.
	Kind string
	// ShortNames are extra names the CLI and REST API accept ("vs").
	ShortNames []string
	// Decode turns the spec's JSON into the typed spec stored in
	// Object.Spec. Unknown fields must be errors; returning FieldErrors
	// (Object left empty) lets the error name the field path.
	Decode func(json []byte) (any, error)
	// Validate checks one decoded object on its own, as Istio's
	// validation webhook does: any error refuses the batch. Errors name
	// fields relative to the spec. Nil means no checks beyond Decode.
	Validate func(*Object) []FieldError
	// Analyze reports, as `istioctl analyze` does, what looks wrong about
	// an object within the snapshot it is part of (which includes the
	// object itself): references to objects that do not exist, conflicts
	// with other objects. Findings never refuse a change, because the
	// other object may come later or from another source. Nil means none.
	Analyze func(*Object, *Snapshot) []Warning
	// Redact returns a copy of a spec with its secret values (webhook
	// secrets) replaced by Redacted, for what the API shows readers. It
	// must not modify spec: snapshots are shared and immutable. Nil means
	// the kind holds no secrets.
	Redact func(spec any) any
	// Unredact undoes Redact for an applied spec: it returns spec with each
	// Redacted value replaced by the value stored for the same field of
	// stored, the spec of the object with the same key in the store (nil
	// when there is none), so applying what GET showed keeps the secrets.
	// A Redacted value it cannot match is a FieldError asking for the
	// secret again, never stored as the literal string. It must modify
	// neither argument. Required with Redact.
	Unredact func(spec, stored any) (any, []FieldError)
}

// Redacted stands in for a secret value in API responses.
const Redacted = "<redacted>"

// Kinds is the set of kinds one store or CLI understands.
type Kinds struct {
	specs  []KindSpec
	byKind map[string]*KindSpec // lower-cased kind, plural and short names
}

// NewKinds builds a registry. Kind names must be unique.
func NewKinds(specs ...KindSpec) (*Kinds, error) {
	k := &Kinds{byKind: map[string]*KindSpec{}}
	k.specs = append(k.specs, specs...)
	for i := range k.specs {
		s := &k.specs[i]
		if s.Kind == "" || len(s.APIVersions) == 0 || s.Decode == nil {
			return nil, fmt.Errorf("kind %q: Kind, APIVersions and Decode are required", s.Kind)
		}
		if (s.Redact == nil) != (s.Unredact == nil) {
			return nil, fmt.Errorf("kind %s: Redact and Unredact go together", s.Kind)
		}
		wire, group, _ := strings.Cut(s.Kind, ".")
		plural := wire + "s"
		if group != "" {
			plural += "." + group // "gateways.gateway.networking.k8s.io", as kubectl
		}
		names := append([]string{s.Kind, plural}, s.ShortNames...)
		for _, n := range names {
			n = strings.ToLower(n)
			if prev, ok := k.byKind[n]; ok && prev != s {
				return nil, fmt.Errorf("kind %s: name %q already used by kind %s", s.Kind, n, prev.Kind)
			}
			k.byKind[n] = s
		}
	}
	return k, nil
}

// Lookup finds a kind by its name, case-insensitively, or by its plural or
// short name ("virtualservice", "virtualservices", "vs").
func (k *Kinds) Lookup(name string) (*KindSpec, bool) {
	s, ok := k.byKind[strings.ToLower(name)]
	return s, ok
}

// Names lists the kinds in registration order.
func (k *Kinds) Names() []string {
	out := make([]string, len(k.specs))
	for i, s := range k.specs {
		out[i] = s.Kind
	}
	return out
}

// Redact returns o as readers may see it: o itself when its kind holds no
// secrets, else a copy whose spec has secret values replaced by Redacted.
// o is not modified.
func (k *Kinds) Redact(o *Object) *Object {
	s, ok := k.spec(o.Kind)
	if !ok || s.Redact == nil {
		return o
	}
	cp := *o
	cp.Spec = s.Redact(o.Spec)
	return &cp
}

// unredact returns batch with Redacted values restored from the objects of
// base with the same keys (see KindSpec.Unredact). Objects without
// secrets are returned as they are; the batch's objects are not modified.
func (k *Kinds) unredact(base *Snapshot, batch []*Object) ([]*Object, FieldErrors) {
	var out []*Object
	var errs FieldErrors
	for i, o := range batch {
		s, ok := k.spec(o.Kind)
		if !ok || s.Unredact == nil {
			continue
		}
		var stored any
		if prev := base.Get(o.Kind, o.Meta.Namespace, o.Meta.Name); prev != nil {
			stored = prev.Spec
		}
		spec, es := s.Unredact(o.Spec, stored)
		for j := range es {
			if es[j].Object == "" {
				es[j].Object = o.Key()
			}
		}
		errs = append(errs, es...)
		if out == nil {
			out = slices.Clone(batch)
		}
		cp := *o
		cp.Spec = spec
		out[i] = &cp
	}
	if out == nil {
		out = batch
	}
	sortFieldErrors(errs)
	return out, errs
}

// WireKind is the kind objects of a registry kind say in YAML: kind
// itself, or the part before the group of a qualified kind
// ("Gateway.gateway.networking.k8s.io" is "Gateway").
func WireKind(kind string) string {
	wire, _, _ := strings.Cut(kind, ".")
	return wire
}

// specFor finds the spec of an object that says kind and apiVersion: the
// kind qualified by apiVersion's group if the registry has that (Gateway
// API's Gateway beside Istio's), else the kind as spelled.
func (k *Kinds) specFor(kind, apiVersion string) (*KindSpec, bool) {
	if group, _, ok := strings.Cut(apiVersion, "/"); ok && !strings.Contains(kind, ".") {
		if s, ok := k.spec(kind + "." + group); ok {
			return s, true
		}
	}
	return k.spec(kind)
}

// spec finds the spec of an exactly spelled kind.
func (k *Kinds) spec(kind string) (*KindSpec, bool) {
	s, ok := k.byKind[strings.ToLower(kind)]
	if !ok || s.Kind != kind {
		return nil, false
	}
	return s, true
}

func (s *KindSpec) acceptsVersion(v string) bool {
	for _, a := range s.APIVersions {
		if a == v {
			return true
		}
	}
	return false
}

// acceptsGroup reports whether apiVersion's API group ("networking.istio.io"
// of "networking.istio.io/v1") is one the kind is served in.
func (s *KindSpec) acceptsGroup(apiVersion string) bool {
	group, _, _ := strings.Cut(apiVersion, "/")
	for _, a := range s.APIVersions {
		if g, _, _ := strings.Cut(a, "/"); g == group {
			return true
		}
	}
	return false
}

// serves reports whether an object of this kind and apiVersion is one the
// registry serves: a kind of this exact name in that API group. An empty
// apiVersion is served, to be refused for that reason alone.
func (k *Kinds) serves(kind, apiVersion string) bool {
	s, ok := k.specFor(kind, apiVersion)
	if !ok {
		_, typo := k.Lookup(kind)
		return typo // a served kind misspelt in case: an error, not another product's
	}
	return apiVersion == "" || s.acceptsGroup(apiVersion)
}
