// Package ui serves meshlens' topology web UI: a single-page application
// built from web/ with npm (Vite) into dist/ and embedded in the binary.
//
// dist/ holds only a placeholder in git; `make ui` (npm ci && npm run build
// in ui/web) fills it. A binary built without that step still serves a page
// saying how to build the UI, so the API keeps working either way.
package ui

import (
	"bytes"
	"embed"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"
)

// The all: prefix embeds dist/.gitkeep too, so the pattern matches even
// when the UI was never built.
//
//go:embed all:dist
var dist embed.FS

// Handler serves the UI from the embedded build. See HandlerFS.
func Handler() http.Handler {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		// fs.Sub fails only for an invalid path; "dist" is valid.
		panic(err)
	}
	return HandlerFS(sub)
}

// HandlerFS serves a built single-page application from files:
//   - existing files are served with their content type; files under
//     assets/ carry a content hash in their name and are cached for a year,
//     everything else must be revalidated;
//   - any other GET path that does not look like a file (no extension) is a
//     client-side route and gets index.html;
//   - paths under /api/ are never answered with the page: they are 404, so
//     a wrong API URL fails loudly instead of returning HTML.
//
// Mount it at the root of the --http listener after the API routes.
func HandlerFS(files fs.FS) http.Handler {
	index, err := fs.ReadFile(files, "index.html")
	if err != nil {
		index = []byte(notBuiltPage)
	}
	return &handler{files: files, index: index, modTime: time.Now()}
}

type handler struct {
	files   fs.FS
	index   []byte
	modTime time.Time
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	p := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
	if p == "api" || strings.HasPrefix(p, "api/") {
		http.NotFound(w, r)
		return
	}
	if p != "" && p != "index.html" {
		if data, err := fs.ReadFile(h.files, p); err == nil {
			h.serveFile(w, r, p, data)
			return
		}
		if path.Ext(p) != "" {
			// A missing asset (e.g. an old hashed bundle after an upgrade)
			// must not be answered with HTML, or the browser reports a
			// confusing MIME error instead of a 404.
			http.NotFound(w, r)
			return
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	http.ServeContent(w, r, "index.html", h.modTime, bytes.NewReader(h.index))
}

func (h *handler) serveFile(w http.ResponseWriter, r *http.Request, name string, data []byte) {
	if ct := mime.TypeByExtension(path.Ext(name)); ct != "" {
		w.Header().Set("Content-Type", ct)
	}
	if strings.HasPrefix(name, "assets/") {
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		w.Header().Set("Cache-Control", "no-cache")
	}
	w.Header().Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, name, h.modTime, bytes.NewReader(data))
}

const notBuiltPage = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>meshlens</title>
<style>body{font:15px/1.5 system-ui,sans-serif;color:#1f2937;max-width:40rem;margin:4rem auto;padding:0 1rem}
code{background:#f3f4f6;padding:.1rem .3rem;border-radius:4px}</style></head>
<body><h1>meshlens</h1>
<p>The web UI was not built into this binary. The API is available under <code>/api/v1/</code>.</p>
<p>To build the UI, run <code>make ui</code> (or <code>cd ui/web &amp;&amp; npm ci &amp;&amp; npm run build</code>)
and rebuild meshlens.</p></body></html>
`
