package config

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Sources in the order they win when two define the same object: a
// directory checkout (GitOps) over the cluster's custom resources over the
// REST API. A source may neither change nor delete an object a stronger one
// defines; a stronger one takes over an object a weaker one defined.
var sourcePrecedence = map[string]int{SourceAPI: 1, SourceKube: 2, SourceDir: 3}

// SourceKube is the source of objects read from a Kubernetes cluster; their
// origin is "kube:Kind/namespace/name".
const SourceKube = "kube"

// DescribeOrigin names an object's origin for people: "the REST API", "the
// config dir (reviews.yaml)", "Kubernetes (VirtualService/default/reviews)".
func DescribeOrigin(origin string) string {
	src, detail, _ := strings.Cut(origin, ":")
	switch src {
	case SourceAPI:
		return "the REST API"
	case SourceDir:
		return "the config dir (" + detail + ")"
	case SourceKube:
		return "Kubernetes (" + detail + ")"
	}
	return origin
}

// SyncSource makes the objects of one source exactly objs, like
// replaceSource, for a source whose objects stand each on their own, as
// Kubernetes custom resources do: an object that fails validation is
// refused alone (its last accepted version, if any, stays in force) and
// the rest is applied in one commit. An object a stronger source defines is
// refused too. refused maps each refused key to why; warnings are the
// analysis findings of the applied change.
func (s *Store) SyncSource(ctx context.Context, source string, objs []*Object, origins map[string]string) (refused map[string]FieldErrors, warnings Warnings, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	refused = map[string]FieldErrors{}
	cur := s.Snapshot()
	mine := sourcePrecedence[source]
	origins = cloneMap(origins)

	var batch []*Object
	for _, o := range objs {
		key := o.Key()
		if prev, ok := s.origins[key]; ok && sourcePrecedence[originSource(prev)] > mine {
			refused[key] = FieldErrors{{Object: key, Message: fmt.Sprintf("also defined by %s, which wins; that definition is served", DescribeOrigin(prev))}}
			continue
		}
		batch = append(batch, o)
	}
	inBatch := map[string]bool{}
	for _, o := range batch {
		inBatch[o.Key()] = true
	}
	remove := map[string]bool{}
	for key, origin := range s.origins {
		if originSource(origin) == source && !inBatch[key] && refused[key] == nil {
			remove[key] = true
		}
	}

	// Each round refuses the objects the errors name; at most
	// MaxReportedErrors are named per round.
	for round := 0; round <= len(batch)/MaxReportedErrors+2; round++ {
		batch, err = s.kinds.unredactAll(cur, batch)
		if err == nil {
			_, _, err = s.kinds.prepare(cur, batch, remove)
		}
		if err == nil {
			break
		}
		var fe FieldErrors
		if !errors.As(err, &fe) {
			return nil, nil, err
		}
		bad := map[string]FieldErrors{}
		for _, e := range fe {
			if inBatch[e.Object] {
				bad[e.Object] = append(bad[e.Object], e)
			}
		}
		if len(bad) == 0 {
			// The errors are in objects this source does not own: the
			// change would break them, so nothing is applied.
			return nil, nil, err
		}
		kept := batch[:0:0]
		for _, o := range batch {
			key := o.Key()
			if bad[key] == nil {
				kept = append(kept, o)
				continue
			}
			refused[key] = bad[key]
			delete(inBatch, key)
			if old := cur.getKey(key); old != nil && originSource(s.origins[key]) == source {
				kept = append(kept, old) // the last accepted version stays
				inBatch[key] = true
				origins[key] = s.origins[key]
			}
		}
		batch = kept
	}
	if err != nil {
		return nil, nil, err
	}
	for key := range remove {
		if inBatch[key] {
			delete(remove, key)
		}
	}
	_, warnings, err = s.commit(ctx, source, batch, origins, remove)
	if err != nil {
		return nil, nil, err
	}
	return refused, warnings, nil
}

// unredactAll is unredact with its errors as an error.
func (k *Kinds) unredactAll(base *Snapshot, batch []*Object) ([]*Object, error) {
	out, errs := k.unredact(base, batch)
	if len(errs) > 0 {
		return batch, errs
	}
	return out, nil
}

func cloneMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
