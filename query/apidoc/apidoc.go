// Package apidoc checks routes against the API's one OpenAPI document,
// query/openapi.yaml, so every package that mounts routes can prove they are
// documented the same way.
package apidoc

import (
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"

	"github.com/labstack/echo/v4"
	"sigs.k8s.io/yaml"
)

var param = regexp.MustCompile(`:([A-Za-z]+)`)

// Undocumented returns "METHOD /path" for every route of e that the OpenAPI
// document at path does not describe. Echo's ":name" parameters match
// OpenAPI's "{name}". Routes under /api/v1 are paths of the document's
// server (/api/v1); any other route (GET /metrics/istio) must be a path of
// its own whose path-level servers put it at the root (url "/").
func Undocumented(path string, e *echo.Echo) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc struct {
		Paths map[string]map[string]any `json:"paths"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var missing []string
	for _, r := range e.Routes() {
		if r.Method == echo.RouteNotFound {
			continue // echo's own fallback of a group, not a route
		}
		p, api := strings.CutPrefix(r.Path, "/api/v1")
		p = param.ReplaceAllString(p, "{$1}")
		item, ok := doc.Paths[p]
		if ok && !api && !atRoot(item) {
			ok = false
		}
		if _, has := item[strings.ToLower(r.Method)]; !ok || !has {
			missing = append(missing, r.Method+" "+p)
		}
	}
	sort.Strings(missing)
	return missing, nil
}

// atRoot reports whether a path item's own servers put it at the root.
func atRoot(item map[string]any) bool {
	servers, _ := item["servers"].([]any)
	if len(servers) == 0 {
		return false
	}
	s, _ := servers[0].(map[string]any)
	return s["url"] == "/"
}
