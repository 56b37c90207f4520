package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/backend/resource/httpadapter"
)

// CallResource answers the frontend's lookups for template variables and
// the query editor: GET namespaces, services?namespace=, versions?namespace=&service=,
// each with the dashboard's range as from and to (unix milliseconds).
func (d *Datasource) CallResource(ctx context.Context, req *backend.CallResourceRequest, sender backend.CallResourceResponseSender) error {
	return d.resources.CallResource(ctx, req, sender)
}

func (d *Datasource) resourceHandler() backend.CallResourceHandler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /namespaces", d.variable(func(svcs []apiService, _ url.Values) []string {
		var out []string
		for _, s := range svcs {
			out = append(out, s.Namespace)
		}
		return out
	}))
	mux.HandleFunc("GET /services", d.variable(func(svcs []apiService, _ url.Values) []string {
		var out []string
		for _, s := range svcs {
			out = append(out, s.Name)
		}
		return out
	}))
	mux.HandleFunc("GET /versions", d.variable(func(svcs []apiService, q url.Values) []string {
		var out []string
		for _, s := range svcs {
			if q.Get("service") == "" || s.Name == q.Get("service") {
				out = append(out, s.Versions...)
			}
		}
		return out
	}))
	return httpadapter.New(mux)
}

// Value is one value of a template variable.
type Value struct {
	Text  string `json:"text"`
	Value string `json:"value"`
}

func (d *Datasource) variable(pick func([]apiService, url.Values) []string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if d.setupErr != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": d.setupErr.Error()})
			return
		}
		q := r.URL.Query()
		tr, err := rangeParams(q)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		win, err := windowOf(tr, d.now())
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		p := url.Values{}
		win.params(p, "window")
		if ns := q.Get("namespace"); ns != "" {
			p.Set("namespace", ns)
		}
		var res apiServices
		if err := d.client.Get(r.Context(), "/services", p, &res); err != nil {
			status := http.StatusBadGateway
			var ae *APIError
			if errors.As(err, &ae) && ae.Status != 0 {
				status = ae.Status
			}
			writeJSON(w, status, map[string]string{"error": "variable values: " + err.Error()})
			return
		}
		var svcs []apiService
		for _, s := range res.Services {
			// meshlens keeps edges with either end in the namespace; a
			// variable lists only what is in it.
			if ns := q.Get("namespace"); ns == "" || s.Namespace == ns {
				svcs = append(svcs, s)
			}
		}
		seen := map[string]bool{}
		out := []Value{}
		for _, v := range pick(svcs, q) {
			if v != "" && !seen[v] {
				seen[v] = true
				out = append(out, Value{Text: v, Value: v})
			}
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Value < out[j].Value })
		writeJSON(w, http.StatusOK, out)
	}
}

// rangeParams reads from and to (unix milliseconds); either may be absent.
func rangeParams(q url.Values) (backend.TimeRange, error) {
	var tr backend.TimeRange
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"from", &tr.From}, {"to", &tr.To}} {
		if s := q.Get(p.name); s != "" {
			ms, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return tr, fmt.Errorf("%s: %q is not unix milliseconds", p.name, s)
			}
			*p.dst = time.UnixMilli(ms)
		}
	}
	return tr, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client went away: nothing to do
}
