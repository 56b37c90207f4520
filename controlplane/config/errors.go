package config

import (
	"fmt"
	"sort"
	"strings"
)

// FieldError says why one field of one object is invalid. Object is the
// object's key ("VirtualService/default/reviews"), or "document N" when the
// document was too broken to name its object. Field is a path inside the spec
// in the object's JSON field names ("http[0].route[1].weight"); metadata and
// envelope fields are named from the top ("metadata.name", "apiVersion").
type FieldError struct {
	Object  string `json:"object"`
	Field   string `json:"field"`
	Message string `json:"message"`
}

func (e FieldError) Error() string {
	switch {
	case e.Object == "" && e.Field == "":
		return e.Message
	case e.Field == "":
		return e.Object + ": " + e.Message
	default:
		return e.Object + " " + e.Field + ": " + e.Message
	}
}

// FieldErrors is every field error of one batch. A batch with any of them is
// refused whole.
type FieldErrors []FieldError

func (es FieldErrors) Error() string {
	switch len(es) {
	case 0:
		return "no errors"
	case 1:
		return "invalid config: " + es[0].Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "invalid config: %d errors:", len(es))
	for _, e := range es {
		b.WriteString("\n  ")
		b.WriteString(e.Error())
	}
	return b.String()
}

// sortFieldErrors orders errors by object, then field, so output is stable.
func sortFieldErrors(es FieldErrors) {
	sort.SliceStable(es, func(i, j int) bool {
		if es[i].Object != es[j].Object {
			return es[i].Object < es[j].Object
		}
		return es[i].Field < es[j].Field
	})
}

// fieldErrs collects errors for one object while validating it.
type fieldErrs struct {
	object string
	errs   []FieldError
}

func (f *fieldErrs) add(field, format string, args ...any) {
	f.errs = append(f.errs, FieldError{Object: f.object, Field: field, Message: fmt.Sprintf(format, args...)})
}

// joinPath appends a field name to a path.
func joinPath(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

func indexPath(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

func keyPath(path, key string) string { return path + "[" + key + "]" }
