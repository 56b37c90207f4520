// Package config is meshlens' configuration model: Istio's own API objects
// (VirtualService, DestinationRule, ServiceEntry, WorkloadEntry,
// PeerAuthentication, AuthorizationPolicy) and meshlens' objects (Rollout,
// AlertRule), as users write them in Kubernetes-style YAML. It owns parsing,
// validation and the durable store; it publishes immutable snapshots that the
// xDS translator, the rollout engine and the API read.
package config

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Meta is the Kubernetes-style identity of an object.
type Meta struct {
	Name        string            `json:"name"`
	Namespace   string            `json:"namespace,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Object is one configuration object. Spec holds the typed spec: a pointer to
// the istio.io/api message for Istio kinds (e.g. *networkingv1.VirtualService)
// or a meshlens type for meshlens kinds.
type Object struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Meta       Meta   `json:"metadata"`
	Spec       any    `json:"spec"`
}

// Key names an object: "Kind/namespace/name".
func (o *Object) Key() string { return o.Kind + "/" + o.Meta.Namespace + "/" + o.Meta.Name }

// Snapshot is an immutable view of all accepted configuration at one version.
// Readers must not modify it or anything it points to.
type Snapshot struct {
	Version uint64
	Objects []*Object // sorted by Key
}

// OfKind returns the objects of one kind, in key order.
func (s *Snapshot) OfKind(kind string) []*Object {
	if s == nil {
		return nil
	}
	var out []*Object
	for _, o := range s.Objects {
		if o.Kind == kind {
			out = append(out, o)
		}
	}
	return out
}

// Get returns one object, or nil.
func (s *Snapshot) Get(kind, namespace, name string) *Object {
	if s == nil {
		return nil
	}
	key := kind + "/" + namespace + "/" + name
	i, found := slices.BinarySearchFunc(s.Objects, key, func(o *Object, k string) int { return strings.Compare(o.Key(), k) })
	if !found {
		return nil
	}
	return s.Objects[i]
}

// MarshalJSON writes the object as users write it. A proto spec (the Istio
// kinds) is written with protojson, so oneofs, enums and durations look as
// in Istio's documentation; any other spec with encoding/json.
func (o Object) MarshalJSON() ([]byte, error) {
	var spec json.RawMessage
	var err error
	if m, ok := o.Spec.(proto.Message); ok {
		spec, err = protojson.Marshal(m)
	} else {
		spec, err = json.Marshal(o.Spec)
	}
	if err != nil {
		return nil, fmt.Errorf("encode %s spec: %w", o.Key(), err)
	}
	return json.Marshal(struct {
		APIVersion string          `json:"apiVersion"`
		Kind       string          `json:"kind"`
		Meta       Meta            `json:"metadata"`
		Spec       json.RawMessage `json:"spec"`
	}{o.APIVersion, WireKind(o.Kind), o.Meta, spec})
}
