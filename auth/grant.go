package auth

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Grant is what a caller may do. Every caller with a grant reads
// everything (reads are not per namespace). Role is the caller's highest
// role; with Namespaces it is operator of those namespaces only.
//
// The grammar, in a tokens file and in an OIDC role claim, is a
// comma-separated list of
//
//	viewer          read everything
//	operator        read, and change every namespace (the mesh root namespace included)
//	operator:NS     read, and change namespace NS only
//	admin           everything
//
// "operator" alone keeps the meaning it had before namespaces existed.
type Grant struct {
	Role       Role
	Namespaces []string // sorted, unique; only with Role Operator
}

// Scoped reports whether the grant changes some namespaces only.
func (g Grant) Scoped() bool { return len(g.Namespaces) > 0 }

// String is the grant in the grammar ParseGrant reads, canonical:
// "operator:team-a,operator:team-b", "admin".
func (g Grant) String() string {
	if !g.Scoped() {
		return g.Role.String()
	}
	parts := make([]string, len(g.Namespaces))
	for i, ns := range g.Namespaces {
		parts[i] = "operator:" + ns
	}
	return strings.Join(parts, ",")
}

// MayChangeSomething reports whether the grant changes anything at all.
func (g Grant) MayChangeSomething() bool { return g.Role >= Operator }

// MayChangeEverywhere reports whether the grant changes every namespace,
// the mesh root namespace and cluster-wide things included.
func (g Grant) MayChangeEverywhere() bool { return g.Role >= Operator && !g.Scoped() }

// mayChange reports whether the grant changes namespace ns, where root is
// the mesh root namespace (its config applies to every namespace, so only
// an unscoped grant changes it).
func (g Grant) mayChange(ns, root string) bool {
	if g.MayChangeEverywhere() {
		return true
	}
	return g.MayChangeSomething() && ns != root && slices.Contains(g.Namespaces, ns)
}

// Merge is the union of two grants: the more powerful unscoped role wins;
// scoped operators add up their namespaces.
func (g Grant) Merge(o Grant) Grant {
	switch {
	case g.Role == 0:
		return o
	case o.Role == 0:
		return g
	case g.MayChangeEverywhere() || o.MayChangeEverywhere():
		// The other's scoped part is included in an unscoped operator.
		return Grant{Role: max(g.Role, o.Role)}
	case g.Scoped() && o.Scoped():
		ns := slices.Concat(g.Namespaces, o.Namespaces)
		slices.Sort(ns)
		return Grant{Role: Operator, Namespaces: slices.Compact(ns)}
	case g.Scoped():
		return g // o is a viewer: reads are in every grant
	case o.Scoped():
		return o
	}
	return Grant{Role: max(g.Role, o.Role)}
}

// ParseGrant reads a comma-separated list of roles (see Grant). Errors
// name the role that is wrong and why.
func ParseGrant(s string) (Grant, error) {
	if strings.TrimSpace(s) == "" {
		return Grant{}, errors.New("no role: want viewer, operator, operator:NAMESPACE or admin")
	}
	var g Grant
	for _, part := range strings.Split(s, ",") {
		one, err := parseOne(strings.TrimSpace(part))
		if err != nil {
			return Grant{}, err
		}
		g = g.Merge(one)
	}
	return g, nil
}

func parseOne(s string) (Grant, error) {
	name, ns, scoped := strings.Cut(s, ":")
	role, err := ParseRole(name)
	if err != nil {
		return Grant{}, err
	}
	if !scoped {
		return Grant{Role: role}, nil
	}
	switch role {
	case Viewer:
		return Grant{}, fmt.Errorf("%q: reads are not per namespace (every role reads everything); use viewer", s)
	case Admin:
		return Grant{}, fmt.Errorf("%q: admin is cluster-wide; for one namespace use operator:%s", s, ns)
	}
	if ns == "" {
		return Grant{}, fmt.Errorf("%q: no namespace after the colon", s)
	}
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		return Grant{}, fmt.Errorf("%q: namespace %q is not a Kubernetes namespace name: %s", s, ns, strings.Join(errs, "; "))
	}
	return Grant{Role: Operator, Namespaces: []string{ns}}, nil
}
