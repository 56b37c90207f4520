package config

import (
	"errors"
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

// FieldErrors are the field errors of one batch. A batch with any of them is
// refused whole. A batch with more than MaxReportedErrors fails with
// *TooManyErrors instead, which holds the first of them as FieldErrors.
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

// MaxReportedErrors bounds the errors a batch reports in full: a file of a
// million broken objects is answered with the first ones and a count, in
// bounded memory, instead of an answer larger than the input.
const MaxReportedErrors = 100

// TooManyErrors is the error of a batch with more than MaxReportedErrors
// errors: the first MaxReportedErrors, and how many there were in all.
// errors.As finds First as FieldErrors, so code that only shows errors
// needs no case for it; ErrorCount gives the total.
type TooManyErrors struct {
	First FieldErrors
	Total int
}

func (e *TooManyErrors) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "invalid config: %d errors, the first %d:", e.Total, len(e.First))
	for _, fe := range e.First {
		b.WriteString("\n  ")
		b.WriteString(fe.Error())
	}
	fmt.Fprintf(&b, "\n  ... and %d more errors", e.Total-len(e.First))
	return b.String()
}

func (e *TooManyErrors) Unwrap() error { return e.First }

// ErrorCount is how many field errors err stands for: the total of a
// *TooManyErrors, the length of FieldErrors, else 0.
func ErrorCount(err error) int {
	var tm *TooManyErrors
	if errors.As(err, &tm) {
		return tm.Total
	}
	var fe FieldErrors
	if errors.As(err, &fe) {
		return len(fe)
	}
	return 0
}

// errorList gathers a batch's errors: the first MaxReportedErrors in full
// and a count of the rest.
type errorList struct {
	first FieldErrors
	total int
}

func (l *errorList) add(es ...FieldError) {
	for _, e := range es {
		l.total++
		if len(l.first) < MaxReportedErrors {
			l.first = append(l.first, e)
		}
	}
}

// err is nil, FieldErrors, or *TooManyErrors; sorted says whether to order
// the errors by object and field first.
func (l *errorList) err(sorted bool) error {
	if l.total == 0 {
		return nil
	}
	if sorted {
		sortFieldErrors(l.first)
	}
	if l.total > len(l.first) {
		return &TooManyErrors{First: l.first, Total: l.total}
	}
	return l.first
}
