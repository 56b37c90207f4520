package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/meshlens/meshlens/alerting"
	"github.com/meshlens/meshlens/controlplane/config"
	"github.com/meshlens/meshlens/rollout"
)

// configKinds is the registry of config kinds this binary understands.
// `meshlens serve` builds its store with it and `meshlens validate` checks
// with it, so both accept the same config. Packages with their own kinds
// (rollout, alerting) add their KindSpecs here.
func configKinds() (*config.Kinds, error) {
	specs := config.IstioKinds(config.IstioOptions{})
	specs = append(specs, rollout.KindSpec(config.DefaultDomainSuffix), alerting.KindSpec())
	return config.NewKinds(specs...)
}

// runValidate is `meshlens validate -f FILE|DIR|-`: offline, the checks the
// server runs before accepting config, over the given files as one batch
// (as if they were the whole config). Exit status 1 with every field error,
// like `istioctl analyze`, so CI can gate on it.
func runValidate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("validate", "validate -f FILE|DIR|- [-f ...]", stderr)
	contents, err := parseConfigArgs(fs, args)
	if err != nil {
		return err
	}
	kinds, err := configKinds()
	if err != nil {
		return err
	}
	var all []*config.Object
	var errs config.FieldErrors
	fileOf := map[string]string{}
	for _, f := range contents {
		objs, err := kinds.Parse(f.data)
		var fe config.FieldErrors
		if errors.As(err, &fe) {
			for _, e := range fe {
				fmt.Fprintf(stdout, "Error [%s] %s\n", f.name, e.Error())
			}
			errs = append(errs, fe...)
			continue
		} else if err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
		for _, o := range objs {
			fileOf[o.Key()] = f.name
		}
		all = append(all, objs...)
	}
	if len(errs) == 0 {
		err := kinds.Validate(nil, all)
		var fe config.FieldErrors
		if errors.As(err, &fe) {
			printFieldErrors(stdout, fe, fileOf)
			errs = fe
		} else if err != nil {
			return err
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %d errors in %d files", errInvalid, len(errs), len(contents))
	}
	fmt.Fprintf(stdout, "No validation issues found in %d objects (%d files).\n", len(all), len(contents))
	return nil
}
