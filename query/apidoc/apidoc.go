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

// Undocumented returns "METHOD /path" for every route of e under /api/v1
// that the OpenAPI document at path does not describe. Echo's ":name"
// parameters match OpenAPI's "{name}".
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
		if !strings.HasPrefix(r.Path, "/api/v1") {
			continue
		}
		p := param.ReplaceAllString(strings.TrimPrefix(r.Path, "/api/v1"), "{$1}")
		if _, ok := doc.Paths[p][strings.ToLower(r.Method)]; !ok {
			missing = append(missing, r.Method+" "+p)
		}
	}
	sort.Strings(missing)
	return missing, nil
}
