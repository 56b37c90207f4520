// Package views is the topology UI's saved views: named snapshots of what the
// shareable URL holds (graph view, namespace, window, filters, grouping,
// collapsed groups, the positions of pinned nodes, the selected node), kept in
// ClickHouse so that every meshlens replica sharing it serves the same views,
// and served as /api/v1/views. Reads are for viewers; saving and deleting
// need an operator token, whose fingerprint is recorded as the view's owner.
package views

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/util/validation"
)

// View is one saved view.
type View struct {
	Name string `json:"name"`
	// Graph is the graph view: service, version or workload.
	Graph     string `json:"graph"`
	Namespace string `json:"namespace,omitempty"`
	// Window is the graph's window, a duration ("5m").
	Window string `json:"window"`
	// End pins the window's end (RFC 3339); empty is live.
	End string `json:"end,omitempty"`
	// Source is live, clickhouse or prometheus; empty is live.
	Source  string  `json:"source,omitempty"`
	Filters Filters `json:"filters"`
	// GroupBy groups the graph's nodes into boxes: namespace, app, version,
	// workload, locality, or label:KEY for a Kubernetes Pod label; empty
	// groups versions and workloads by service.
	GroupBy string `json:"groupBy,omitempty"`
	// Collapsed are the groups drawn as one node, by their value.
	Collapsed []string `json:"collapsed,omitempty"`
	// Pinned are the positions of the nodes the user placed, by node id.
	Pinned map[string]Position `json:"pinned,omitempty"`
	// Selected is the selected node or edge id.
	Selected string `json:"selected,omitempty"`

	// Set by the server.
	Owner   string    `json:"owner,omitempty"`
	Updated time.Time `json:"updated,omitzero"`
}

// Filters narrow what the graph shows.
type Filters struct {
	// Search highlights the nodes whose names contain it.
	Search string `json:"search,omitempty"`
	// EdgeLabels shows rates on edges (default true).
	EdgeLabels *bool `json:"edgeLabels,omitempty"`
}

// Position is a node's place on the canvas, in graph coordinates.
type Position struct {
	X float64 `json:"x"`
	Y float64 `json:"y"`
}

// Bounds of a view.
const (
	MaxBodyBytes  = 1 << 20
	MaxNameLength = 100
	MaxPinned     = 5000
	MaxCollapsed  = 1000
	maxIDLength   = 512
	maxCoordinate = 1e7
	maxWindow     = 7 * 24 * time.Hour
)

// FieldError is a view that cannot be saved, naming the field at fault.
type FieldError struct {
	Field   string
	Message string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Message }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Message: fmt.Sprintf(format, args...)}
}

var nameRE = regexp.MustCompile(`^[\p{L}\p{N}._-]([\p{L}\p{N} ._-]*[\p{L}\p{N}._-])?$`)

// ValidName checks a view's name: letters, digits, spaces, '.', '_' and '-',
// not starting or ending with a space, at most MaxNameLength characters.
func ValidName(name string) error {
	switch {
	case name == "":
		return fieldErr("name", "required")
	case utf8.RuneCountInString(name) > MaxNameLength:
		return fieldErr("name", "longer than %d characters", MaxNameLength)
	case !nameRE.MatchString(name):
		return fieldErr("name", "%q: use letters, digits, spaces, '.', '_' and '-' (no space at either end)", name)
	}
	return nil
}

// GroupKeys are the groupings every node has, besides label:KEY.
var GroupKeys = []string{"namespace", "app", "version", "workload", "locality"}

// Decode reads a view from JSON, refusing unknown fields and values of the
// wrong type with an error naming the field.
func Decode(r io.Reader) (*View, error) {
	body, err := io.ReadAll(io.LimitReader(r, MaxBodyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read the view: %w", err)
	}
	if len(body) > MaxBodyBytes {
		return nil, fieldErr("body", "larger than %d bytes", MaxBodyBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var v View
	if err := dec.Decode(&v); err != nil {
		return nil, jsonFieldError(body, err)
	}
	if dec.More() {
		return nil, fieldErr("body", "more than one JSON value")
	}
	return &v, nil
}

func jsonFieldError(body []byte, err error) error {
	var (
		te *json.UnmarshalTypeError
		se *json.SyntaxError
	)
	switch {
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			field = "body"
		}
		return fieldErr(field, "want %s, got JSON %s", te.Type, te.Value)
	case errors.As(err, &se):
		line := 1 + bytes.Count(body[:min(int(se.Offset), len(body))], []byte("\n"))
		return fieldErr("body", "not JSON: %v (line %d, byte %d)", se, line, se.Offset)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return fieldErr("body", "empty or cut short: want a JSON object")
	}
	if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		if name := strings.Trim(f, `"`); name != "" {
			return fieldErr(name, "unknown field")
		}
		return fieldErr("body", `unknown field ""`)
	}
	return fieldErr("body", "%v", err)
}

// Validate checks every field of v, naming the first one at fault, and fills
// the defaults (graph version, window 5m).
func (v *View) Validate() error {
	if err := ValidName(v.Name); err != nil {
		return err
	}
	switch v.Graph {
	case "":
		v.Graph = "version"
	case "service", "version", "workload":
	default:
		return fieldErr("graph", "%q: want service, version or workload", truncate(v.Graph))
	}
	if v.Namespace != "" {
		if errs := validation.IsDNS1123Label(v.Namespace); len(errs) > 0 {
			return fieldErr("namespace", "%q: %s", truncate(v.Namespace), errs[0])
		}
	}
	if v.Window == "" {
		v.Window = "5m"
	}
	w, err := time.ParseDuration(v.Window)
	if err != nil || w <= 0 || w > maxWindow {
		return fieldErr("window", "%q: want a duration from 1s to %s, like 5m", truncate(v.Window), "168h")
	}
	if v.End != "" {
		if _, err := time.Parse(time.RFC3339, v.End); err != nil {
			return fieldErr("end", "%q: want an RFC 3339 time, like 2026-01-02T15:04:05Z", truncate(v.End))
		}
	}
	switch v.Source {
	case "", "live", "clickhouse", "prometheus":
	default:
		return fieldErr("source", "%q: want live, clickhouse or prometheus", truncate(v.Source))
	}
	if len(v.Filters.Search) > 200 {
		return fieldErr("filters.search", "longer than 200 bytes")
	}
	if err := ValidGroupBy(v.GroupBy); err != nil {
		return err
	}
	if len(v.Collapsed) > MaxCollapsed {
		return fieldErr("collapsed", "%d groups: at most %d", len(v.Collapsed), MaxCollapsed)
	}
	for i, c := range v.Collapsed {
		if c == "" || len(c) > maxIDLength {
			return fieldErr(fmt.Sprintf("collapsed[%d]", i), "want a group's value of 1 to %d bytes", maxIDLength)
		}
	}
	if v.GroupBy == "" && len(v.Collapsed) > 0 {
		return fieldErr("collapsed", "collapsed groups need a groupBy")
	}
	if len(v.Pinned) > MaxPinned {
		return fieldErr("pinned", "%d nodes: at most %d", len(v.Pinned), MaxPinned)
	}
	for id, p := range v.Pinned {
		if id == "" || len(id) > maxIDLength {
			return fieldErr("pinned", "a node id of %d bytes: want 1 to %d", len(id), maxIDLength)
		}
		if math.Abs(p.X) > maxCoordinate || math.Abs(p.Y) > maxCoordinate {
			return fieldErr("pinned["+truncate(id)+"]", "position (%g, %g) is off the canvas (|x|, |y| up to %g)", p.X, p.Y, maxCoordinate)
		}
	}
	if len(v.Selected) > maxIDLength {
		return fieldErr("selected", "longer than %d bytes", maxIDLength)
	}
	return nil
}

// ValidGroupBy checks a grouping: one of GroupKeys, or label:KEY with KEY a
// Kubernetes label key ("app.kubernetes.io/part-of").
func ValidGroupBy(g string) error {
	if g == "" {
		return nil
	}
	for _, k := range GroupKeys {
		if g == k {
			return nil
		}
	}
	key, ok := strings.CutPrefix(g, "label:")
	if !ok {
		return fieldErr("groupBy", "%q: want one of %s, or label:KEY", truncate(g), strings.Join(GroupKeys, ", "))
	}
	if errs := validation.IsQualifiedName(key); len(errs) > 0 {
		return fieldErr("groupBy", "label key %q: %s", truncate(key), errs[0])
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
