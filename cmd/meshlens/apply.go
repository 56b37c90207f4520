package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/meshlens/meshlens/controlplane/config"
)

// fileList is a repeatable -f flag.
type fileList []string

func (f *fileList) String() string     { return strings.Join(*f, ",") }
func (f *fileList) Set(v string) error { *f = append(*f, v); return nil }

// configFile is one file's contents, named for error messages.
type configFile struct {
	name string
	data []byte
}

// parseConfigArgs parses a command's flags, whose config files are given
// with the repeatable -f (registered here), and reads those files.
func parseConfigArgs(fs *flag.FlagSet, args []string) ([]configFile, error) {
	var files fileList
	fs.Var(&files, "f", "file, directory or - (stdin) of YAML/JSON config; repeatable")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return nil, flagErr(err)
	}
	if len(pos) > 0 {
		return nil, fmt.Errorf("unexpected argument %q; config files go after -f", pos[0])
	}
	return readConfigFiles(files, os.Stdin)
}

// readConfigFiles reads each path: "-" is stdin, a directory means every
// *.yaml, *.yml and *.json file under it, in lexical order.
func readConfigFiles(paths []string, stdin io.Reader) ([]configFile, error) {
	if len(paths) == 0 {
		return nil, fmt.Errorf("no config given: pass -f FILE, -f DIR or -f - (stdin)")
	}
	var out []configFile
	for _, p := range paths {
		if p == "-" {
			b, err := io.ReadAll(io.LimitReader(stdin, config.MaxDocumentBytes+1))
			if err != nil {
				return nil, fmt.Errorf("reading stdin: %w", err)
			}
			out = append(out, configFile{"stdin", b})
			continue
		}
		fi, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !fi.IsDir() {
			b, err := os.ReadFile(p)
			if err != nil {
				return nil, err
			}
			out = append(out, configFile{p, b})
			continue
		}
		n := len(out)
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() || strings.HasPrefix(d.Name(), ".") {
				if d.IsDir() && path != p && strings.HasPrefix(d.Name(), ".") {
					return filepath.SkipDir
				}
				return nil
			}
			switch strings.ToLower(filepath.Ext(path)) {
			case ".yaml", ".yml", ".json":
				b, err := os.ReadFile(path)
				if err != nil {
					return err
				}
				out = append(out, configFile{path, b})
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if len(out) == n {
			return nil, fmt.Errorf("directory %s holds no .yaml, .yml or .json files", p)
		}
	}
	return out, nil
}

// joinDocuments makes one multi-document body of many files.
func joinDocuments(files []configFile) []byte {
	var b strings.Builder
	for i, f := range files {
		if i > 0 {
			b.WriteString("\n---\n")
		}
		b.Write(f.data)
	}
	return []byte(b.String())
}

// runApply is `meshlens apply -f FILE|DIR|-`: send config to the server,
// which applies all of it or none.
func runApply(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("apply", "apply -f FILE|DIR|- [-f ...] [--dry-run] [--skip-unsupported] [--server URL] [--token TOKEN]", stderr)
	dryRun := fs.Bool("dry-run", false, "only check the config against the server's current config; change nothing")
	skipUnsupported := fs.Bool("skip-unsupported", false, "leave out objects of kinds meshlens does not serve (EnvoyFilter, WasmPlugin, ProxyConfig...) and list them, instead of refusing the whole input")
	var cf clientFlags
	cf.register(fs)
	contents, err := parseConfigArgs(fs, args)
	if err != nil {
		return err
	}
	path, verb := "/config", "applied"
	q := url.Values{}
	if *dryRun {
		q.Set("dryRun", "true")
		verb = "valid (dry run)"
	}
	if *skipUnsupported {
		q.Set("skipUnsupported", "true")
	}
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var resp config.ApplyResponse
	if err := cf.client().do(ctx, "POST", path, joinDocuments(contents), &resp, stderr); err != nil {
		return err
	}
	for _, r := range resp.Applied {
		fmt.Fprintf(stdout, "%s/%s/%s %s\n", r.Kind, r.Namespace, r.Name, verb)
	}
	for _, r := range resp.Skipped {
		fmt.Fprintf(stdout, "%s/%s/%s skipped: meshlens does not support kind %s\n", r.Kind, r.Namespace, r.Name, r.Kind)
	}
	// Findings go with the answer but do not fail the command: the server
	// accepted the config, as Istio would.
	printWarnings(stderr, resp.Warnings, resp.WarningCount, nil)
	fmt.Fprintf(stdout, "config version %d\n", resp.Version)
	return nil
}

// runDelete is `meshlens delete KIND NAME [-n NS]`.
func runDelete(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("delete", "delete KIND NAME [-n NAMESPACE]", stderr)
	ns := fs.String("n", config.DefaultNamespace, "namespace")
	var cf clientFlags
	cf.register(fs)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return flagErr(err)
	}
	if len(pos) != 2 {
		fs.Usage()
		return errUsage
	}
	var resp config.DeleteResponse
	if err := cf.client().do(ctx, "DELETE", "/config/"+pathEscape(pos[0])+"/"+pathEscape(*ns)+"/"+pathEscape(pos[1]), nil, &resp, stderr); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s/%s/%s deleted\nconfig version %d\n", resp.Deleted.Kind, resp.Deleted.Namespace, resp.Deleted.Name, resp.Version)
	printWarnings(stderr, resp.Warnings, resp.WarningCount, nil)
	return nil
}
