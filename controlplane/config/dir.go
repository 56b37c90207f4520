package config

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// SourceDir is the source name of objects read from the config dir.
const SourceDir = "dir"

// DirSource keeps the store in step with a directory of YAML/JSON files
// (GitOps): every *.yaml, *.yml and *.json file under it, recursively.
// The directory is applied as one batch, so a change that spans files
// (a new subset and the route that uses it) lands together, and one
// invalid file refuses the whole re-read, leaving the running config as
// it was. See Store for how dir objects and API objects coexist.
type DirSource struct {
	dir      string
	store    *Store
	logger   *slog.Logger
	debounce time.Duration
}

// NewDirSource watches dir for store.
func NewDirSource(dir string, store *Store, logger *slog.Logger) *DirSource {
	return &DirSource{dir: dir, store: store, logger: logger.With("config_dir", dir), debounce: 200 * time.Millisecond}
}

// Sync reads the directory once and applies it, and returns the analysis
// warnings of the change. The error is a *DirError when files are invalid.
func (d *DirSource) Sync(ctx context.Context) (*Snapshot, Warnings, error) {
	objs, origins, err := d.read()
	if err != nil {
		return nil, nil, err
	}
	sn, ws, err := d.store.replaceSource(ctx, SourceDir, objs, origins)
	if err != nil {
		var fe FieldErrors
		if errors.As(err, &fe) {
			// Name the file of each object so the log says where to fix it.
			de := &DirError{More: ErrorCount(err) - len(fe)}
			for _, e := range fe {
				de.Errors = append(de.Errors, FileError{File: d.fileOf(origins, e.Object), FieldError: e})
			}
			return nil, nil, de
		}
		return nil, nil, err
	}
	return sn, ws, nil
}

// fileOf names the file of an object for messages.
func (d *DirSource) fileOf(origins map[string]string, key string) string {
	if origin, ok := origins[key]; ok {
		return strings.TrimPrefix(origin, SourceDir+":")
	}
	return "(applied through the API)"
}

// FileError is a field error in one file of the config dir.
type FileError struct {
	File string
	FieldError
}

// DirError lists what is wrong in the config dir: the first
// MaxReportedErrors errors, and how many more there are.
type DirError struct {
	Errors []FileError
	More   int
}

func (e *DirError) add(fe FileError) {
	if len(e.Errors) < MaxReportedErrors {
		e.Errors = append(e.Errors, fe)
	} else {
		e.More++
	}
}

func (e *DirError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "config dir refused (%d errors):", len(e.Errors)+e.More)
	for _, fe := range e.Errors {
		fmt.Fprintf(&b, "\n  %s: %s", fe.File, fe.FieldError.Error())
	}
	if e.More > 0 {
		fmt.Fprintf(&b, "\n  ... and %d more errors", e.More)
	}
	return b.String()
}

func (d *DirSource) read() ([]*Object, map[string]string, error) {
	var objs []*Object
	origins := map[string]string{}
	de := &DirError{}
	err := filepath.WalkDir(d.dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() {
			if path != d.dir && strings.HasPrefix(e.Name(), ".") {
				return filepath.SkipDir // .git, and Kubernetes' ..data volumes are read via their links
			}
			return nil
		}
		if !configFile(e.Name()) {
			return nil
		}
		rel, _ := filepath.Rel(d.dir, path)
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		parsed, err := d.store.kinds.Parse(data)
		if err != nil {
			var fe FieldErrors
			if !errors.As(err, &fe) {
				return fmt.Errorf("%s: %w", rel, err)
			}
			for _, e := range fe {
				de.add(FileError{File: rel, FieldError: e})
			}
			de.More += ErrorCount(err) - len(fe)
			return nil
		}
		for _, o := range parsed {
			if prev, dup := origins[o.Key()]; dup {
				de.add(FileError{File: rel, FieldError: FieldError{Object: o.Key(), Message: "also defined in " + strings.TrimPrefix(prev, SourceDir+":")}})
				continue
			}
			origins[o.Key()] = SourceDir + ":" + rel
			objs = append(objs, o)
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("read config dir %s: %w", d.dir, err)
	}
	if len(de.Errors)+de.More > 0 {
		return nil, nil, de
	}
	return objs, origins, nil
}

func configFile(name string) bool {
	if strings.HasPrefix(name, ".") {
		return false // editor swap files and hidden files
	}
	switch strings.ToLower(filepath.Ext(name)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// Run applies the directory, then re-applies it after every change until
// ctx ends. Invalid contents are logged, naming file, object and field,
// and leave the running config untouched. It returns only when ctx ends or
// the directory cannot be watched.
func (d *DirSource) Run(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch config dir %s: %w", d.dir, err)
	}
	defer w.Close()
	if err := d.watchTree(w); err != nil {
		return err
	}
	d.syncAndLog(ctx)
	var timer <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if ev.Has(fsnotify.Create) {
				if fi, err := os.Stat(ev.Name); err == nil && fi.IsDir() {
					_ = d.watchTree(w) // a new subdirectory
				}
			}
			// Editors and git write several events per change: wait for quiet.
			timer = time.After(d.debounce)
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			d.logger.Warn("config dir watch error", "error", err)
		case <-timer:
			timer = nil
			d.syncAndLog(ctx)
		}
	}
}

func (d *DirSource) watchTree(w *fsnotify.Watcher) error {
	return filepath.WalkDir(d.dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("watch config dir: %w", err)
		}
		if e.IsDir() {
			if path != d.dir && strings.HasPrefix(e.Name(), ".") && e.Name() != "..data" {
				return filepath.SkipDir
			}
			if err := w.Add(path); err != nil {
				return fmt.Errorf("watch config dir %s: %w", path, err)
			}
		}
		return nil
	})
}

func (d *DirSource) syncAndLog(ctx context.Context) {
	before := d.store.Snapshot().Version
	sn, ws, err := d.Sync(ctx)
	var de *DirError
	switch {
	case errors.As(err, &de):
		for _, e := range de.Errors {
			d.logger.Error("config dir refused; running config unchanged", "file", e.File, "object", e.Object, "field", e.Field, "error", e.Message)
		}
		if de.More > 0 {
			d.logger.Error("config dir refused; running config unchanged", "more_errors", de.More)
		}
	case err != nil:
		d.logger.Error("config dir refused; running config unchanged", "error", err)
	case sn.Version != before:
		d.logger.Info("config dir applied", "version", sn.Version, "objects", len(sn.Objects), "warnings", len(ws))
		// Only the change's findings, and only some: `meshlens analyze`
		// and GET /api/v1/analysis list them all.
		for _, w := range ws[:min(len(ws), MaxReportedErrors)] {
			d.logger.Warn("config dir analysis", "code", w.Code, "object", w.Object, "field", w.Field, "message", w.Message)
		}
	}
}
