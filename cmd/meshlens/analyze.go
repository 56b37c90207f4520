package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/meshlens/meshlens/app"
	"github.com/meshlens/meshlens/controlplane/config"
)

// runAnalyze is `meshlens analyze`: every analysis finding (with the IST
// codes `istioctl analyze` uses) of the config files given with -f, taken
// as the whole config, or else of the config a server runs (GET
// /api/v1/analysis). Findings exit 0 unless --strict; invalid files exit 1,
// as with `meshlens validate`.
func runAnalyze(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("analyze", "analyze [-f FILE|DIR|- ...] [--server URL] [--strict]", stderr)
	strict := fs.Bool("strict", false, "exit 1 when there are findings")
	var cf clientFlags
	cf.register(fs)
	var files fileList
	fs.Var(&files, "f", "file, directory or - (stdin) of YAML/JSON config to analyse offline; repeatable (without -f: the server's running config)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return flagErr(err)
	}
	if len(pos) > 0 {
		return fmt.Errorf("unexpected argument %q; config files go after -f", pos[0])
	}
	var a *analysis
	if len(files) > 0 {
		a, err = analyzeFiles(files, stdout)
	} else {
		a, err = analyzeServer(ctx, &cf, stderr)
	}
	if err != nil {
		return err
	}
	if len(a.warnings) == 0 {
		fmt.Fprintf(stdout, "No analysis findings in %s.\n", a.what)
		return nil
	}
	printWarnings(stdout, a.warnings, len(a.warnings), a.fileOf)
	fmt.Fprintf(stdout, "%d analysis findings in %s.\n", len(a.warnings), a.what)
	if *strict {
		return fmt.Errorf("%w: %d (--strict)", errWarnings, len(a.warnings))
	}
	return nil
}

// analysis is what `meshlens analyze` found, and in what.
type analysis struct {
	warnings config.Warnings
	fileOf   map[string]string // object key -> file, offline
	what     string
}

// analyzeFiles checks files offline; errors are printed and refuse them.
func analyzeFiles(paths fileList, stdout io.Writer) (*analysis, error) {
	contents, err := readConfigFiles(paths, os.Stdin)
	if err != nil {
		return nil, err
	}
	kinds, err := app.Kinds(config.IstioOptions{})
	if err != nil {
		return nil, err
	}
	c, err := checkFiles(kinds, contents)
	if err != nil {
		return nil, err
	}
	if c.errorCount > 0 {
		printFieldErrors(stdout, c.errs, c.errorCount, c.fileOf)
		return nil, fmt.Errorf("%w: %d errors in %d files; fix them to analyse the files", errInvalid, c.errorCount, len(contents))
	}
	return &analysis{c.warnings, c.fileOf, fmt.Sprintf("%d objects (%d files)", c.objects, len(contents))}, nil
}

func analyzeServer(ctx context.Context, cf *clientFlags, stderr io.Writer) (*analysis, error) {
	var resp config.AnalysisResponse
	if err := cf.client().do(ctx, "GET", "/analysis", nil, &resp, stderr); err != nil {
		return nil, err
	}
	return &analysis{warnings: resp.Warnings, what: fmt.Sprintf("the running config (version %d)", resp.Version)}, nil
}
