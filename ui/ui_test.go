package ui

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"
)

func builtFS() fstest.MapFS {
	return fstest.MapFS{
		"index.html":              {Data: []byte("<!doctype html><title>meshlens app</title>")},
		"assets/index-abc123.js":  {Data: []byte("console.log(1)")},
		"assets/index-abc123.css": {Data: []byte("body{}")},
		"favicon.svg":             {Data: []byte("<svg/>")},
	}
}

func TestHandlerServesFilesAndFallsBackToIndex(t *testing.T) {
	h := HandlerFS(builtFS())
	tests := []struct {
		name, method, path string
		wantStatus         int
		wantType           string
		wantCache          string
		wantBody           string
	}{
		{"root is index", "GET", "/", 200, "text/html; charset=utf-8", "no-cache", "meshlens app"},
		{"client route gets index", "GET", "/services/default/reviews", 200, "text/html; charset=utf-8", "no-cache", "meshlens app"},
		{"hashed script cached immutably", "GET", "/assets/index-abc123.js", 200, "text/javascript; charset=utf-8", "public, max-age=31536000, immutable", "console.log"},
		{"hashed css", "GET", "/assets/index-abc123.css", 200, "text/css; charset=utf-8", "public, max-age=31536000, immutable", "body{}"},
		{"unhashed file revalidated", "GET", "/favicon.svg", 200, "image/svg+xml", "no-cache", "<svg/>"},
		{"missing asset is 404 not html", "GET", "/assets/index-old.js", 404, "text/plain; charset=utf-8", "", "not found"},
		{"api path is never the page", "GET", "/api/v1/nothing", 404, "text/plain; charset=utf-8", "", "not found"},
		{"dot-dot stays inside the build", "GET", "/../../etc/passwd", 200, "text/html; charset=utf-8", "no-cache", "meshlens app"},
		{"dot-dot resolves inside the build", "GET", "/x/../assets/index-abc123.js", 200, "text/javascript; charset=utf-8", "public, max-age=31536000, immutable", "console.log"},
		{"post refused", "POST", "/", 405, "text/plain; charset=utf-8", "", "method not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))
			if rec.Code != tt.wantStatus {
				t.Fatalf("status = %d, want %d (body %q)", rec.Code, tt.wantStatus, rec.Body.String())
			}
			if got := rec.Header().Get("Content-Type"); !strings.EqualFold(got, tt.wantType) {
				t.Errorf("Content-Type = %q, want %q", got, tt.wantType)
			}
			if got := rec.Header().Get("Cache-Control"); got != tt.wantCache {
				t.Errorf("Cache-Control = %q, want %q", got, tt.wantCache)
			}
			if !strings.Contains(rec.Body.String(), tt.wantBody) {
				t.Errorf("body %q does not contain %q", rec.Body.String(), tt.wantBody)
			}
		})
	}
}

func TestHandlerWithoutBuildServesHowToBuildPage(t *testing.T) {
	h := HandlerFS(fstest.MapFS{".gitkeep": {}})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/topology", nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "make ui") {
		t.Fatalf("got %d %q, want the how-to-build page", rec.Code, rec.Body.String())
	}
}

func TestEmbeddedHandlerServesIndex(t *testing.T) {
	// Whether or not the UI was built, the embedded handler answers the root
	// with an HTML page.
	rec := httptest.NewRecorder()
	Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "<html") && !strings.Contains(rec.Body.String(), "<!doctype html>") {
		t.Fatalf("got %d %q", rec.Code, rec.Body.String())
	}
}
