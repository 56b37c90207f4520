package main

import (
	"fmt"
	"io"

	"github.com/meshlens/meshlens/controlplane/config"
)

// printFieldErrors writes errors one a line, like istioctl analyze, and
// says how many more there are when errs is the first of total. files maps
// object keys to the file they came from, when known.
func printFieldErrors(w io.Writer, errs config.FieldErrors, total int, files map[string]string) {
	for _, e := range errs {
		where := e.Object
		if e.Field != "" {
			where += " " + e.Field
		}
		fmt.Fprintf(w, "Error%s %s: %s\n", fileTag(files, e.Object), where, e.Message)
	}
	if more := total - len(errs); more > 0 {
		fmt.Fprintf(w, "... and %d more errors\n", more)
	}
}

// printWarnings writes analysis findings one a line with their code, like
// istioctl analyze, then how many more there are when ws is the first of
// total.
func printWarnings(w io.Writer, ws config.Warnings, total int, files map[string]string) {
	for _, x := range ws {
		where := x.Object
		if x.Field != "" {
			where += " " + x.Field
		}
		fmt.Fprintf(w, "Warning [%s]%s %s: %s\n", x.Code, fileTag(files, x.Object), where, x.Message)
	}
	if more := total - len(ws); more > 0 {
		fmt.Fprintf(w, "... and %d more warnings\n", more)
	}
}

// firstWarnings is at most config.MaxReportedErrors warnings, so that the
// answer to one command stays readable however large its input.
func firstWarnings(ws config.Warnings) config.Warnings {
	return ws[:min(len(ws), config.MaxReportedErrors)]
}

func fileTag(files map[string]string, key string) string {
	if f := files[key]; f != "" {
		return " [" + f + "]"
	}
	return ""
}

// checkedFiles is config files parsed and validated as one batch, offline:
// what `meshlens validate` and `meshlens analyze -f` report.
type checkedFiles struct {
	objects    int
	errs       config.FieldErrors // the first config.MaxReportedErrors
	errorCount int
	warnings   config.Warnings
	fileOf     map[string]string // object key -> file
}

// checkFiles parses every file, then validates all objects as one batch
// (as if they were the whole config). Only the first
// config.MaxReportedErrors errors are kept, whatever the input.
func checkFiles(kinds *config.Kinds, files []configFile) (*checkedFiles, error) {
	c := &checkedFiles{fileOf: map[string]string{}}
	var all []*config.Object
	for _, f := range files {
		objs, err := kinds.Parse(f.data)
		if n := config.ErrorCount(err); n > 0 {
			fe, _ := config.NewErrorsResponse(err)
			for _, e := range fe.Errors {
				if len(c.errs) < config.MaxReportedErrors {
					c.errs = append(c.errs, e)
				}
				c.fileOf[e.Object] = f.name
			}
			c.errorCount += n
			continue
		} else if err != nil {
			return nil, fmt.Errorf("%s: %w", f.name, err)
		}
		for _, o := range objs {
			c.fileOf[o.Key()] = f.name
		}
		all = append(all, objs...)
	}
	c.objects = len(all)
	if c.errorCount > 0 {
		return c, nil
	}
	ws, err := kinds.Validate(nil, all)
	if n := config.ErrorCount(err); n > 0 {
		fe, _ := config.NewErrorsResponse(err)
		c.errs, c.errorCount = fe.Errors, n
		return c, nil
	} else if err != nil {
		return nil, err
	}
	c.warnings = ws
	return c, nil
}
