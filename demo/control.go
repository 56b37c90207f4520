package demo

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ControlHandler serves the demo's control endpoint:
//
//	GET /                          status (JSON): rate, counters, faults
//	PUT /rate?rps=50               change the load generator's rate
//	PUT /fault?service=reviews&version=v3&errorRate=0.5&delay=300ms
//	                               set one version's fault (both 0 clears it)
func (d *Demo) ControlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", d.handleStatus)
	mux.HandleFunc("PUT /rate", d.handleRate)
	mux.HandleFunc("PUT /fault", d.handleFault)
	return mux
}

type statusBody struct {
	Rate   float64           `json:"rate"`
	Stats  Stats             `json:"stats"`
	Faults []faultBody       `json:"faults"`
	Ports  map[string]int    `json:"ports"`
	Split  map[string]uint32 `json:"reviewsSplit,omitempty"`
}

type faultBody struct {
	Service   string  `json:"service"`
	Version   string  `json:"version"`
	ErrorRate float64 `json:"errorRate"`
	Delay     string  `json:"delay"`
}

func (d *Demo) handleStatus(w http.ResponseWriter, _ *http.Request) {
	body := statusBody{Rate: d.load.Rate(), Stats: d.load.Stats(), Faults: []faultBody{}, Ports: map[string]int{}, Split: d.cfg.ReviewsSplit}
	all := d.faults.All()
	for _, k := range slices.SortedFunc(maps.Keys(all), func(a, b VersionKey) int { return strings.Compare(a.String(), b.String()) }) {
		f := all[k]
		body.Faults = append(body.Faults, faultBody{Service: k.Service, Version: k.Version, ErrorRate: f.ErrorRate, Delay: f.Delay.String()})
	}
	for _, e := range d.Endpoints() {
		body.Ports[e.Instance.Workload()] = e.Port
	}
	writeJSON(w, http.StatusOK, body)
}

func (d *Demo) handleRate(w http.ResponseWriter, r *http.Request) {
	rps, err := strconv.ParseFloat(r.URL.Query().Get("rps"), 64)
	if err != nil || !(rps >= 0 && rps <= 100000) { // also refuses NaN
		writeError(w, http.StatusBadRequest, fmt.Sprintf("rps %q: want a number between 0 and 100000", r.URL.Query().Get("rps")))
		return
	}
	d.load.SetRate(rps)
	d.logger.Info("load rate changed", "rps", rps)
	writeJSON(w, http.StatusOK, map[string]float64{"rate": rps})
}

func (d *Demo) handleFault(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	k := VersionKey{Service: q.Get("service"), Version: q.Get("version")}
	known := false
	for _, in := range Bookinfo() {
		known = known || (in.Service == k.Service && in.Version == k.Version)
	}
	if !known {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("service %q version %q: not a demo workload", k.Service, k.Version))
		return
	}
	var f Fault
	if s := q.Get("errorRate"); s != "" {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("errorRate %q: %v", s, err))
			return
		}
		f.ErrorRate = v
	}
	if s := q.Get("delay"); s != "" {
		v, err := time.ParseDuration(s)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("delay %q: %v", s, err))
			return
		}
		f.Delay = v
	}
	if err := f.Validate(); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	d.faults.Set(k, f)
	d.logger.Info("fault changed", "workload", k.String(), "errorRate", f.ErrorRate, "delay", f.Delay)
	writeJSON(w, http.StatusOK, faultBody{Service: k.Service, Version: k.Version, ErrorRate: f.ErrorRate, Delay: f.Delay.String()})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}
