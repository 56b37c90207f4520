package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/meshlens/meshlens/app"
	"github.com/meshlens/meshlens/controlplane/config"
)

// errWarnings means --strict turned analysis warnings into a failure; the
// warnings were printed.
var errWarnings = errors.New("analysis warnings")

// runValidate is `meshlens validate -f FILE|DIR|- [--strict]`: offline, the
// checks the server runs before accepting config, over the given files as
// one batch (as if they were the whole config). Errors (what Istio's
// webhook would refuse) exit 1, so CI can gate on them; analysis warnings
// (references to hosts and subsets the files do not define, which may live
// in the cluster) are printed and exit 0 unless --strict.
func runValidate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("validate", "validate -f FILE|DIR|- [-f ...] [--strict]", stderr)
	strict := fs.Bool("strict", false, "exit 1 on analysis warnings too, not only on errors")
	contents, err := parseConfigArgs(fs, args)
	if err != nil {
		return err
	}
	kinds, err := app.Kinds(config.IstioOptions{})
	if err != nil {
		return err
	}
	c, err := checkFiles(kinds, contents)
	if err != nil {
		return err
	}
	if c.errorCount > 0 {
		printFieldErrors(stdout, c.errs, c.errorCount, c.fileOf)
		return fmt.Errorf("%w: %d errors in %d files", errInvalid, c.errorCount, len(contents))
	}
	printWarnings(stdout, firstWarnings(c.warnings), len(c.warnings), c.fileOf)
	if len(c.warnings) > 0 {
		fmt.Fprintf(stdout, "No errors in %d objects (%d files); %d analysis warnings.\n", c.objects, len(contents), len(c.warnings))
		if *strict {
			return fmt.Errorf("%w: %d (--strict)", errWarnings, len(c.warnings))
		}
		return nil
	}
	fmt.Fprintf(stdout, "No validation issues found in %d objects (%d files).\n", c.objects, len(contents))
	return nil
}
