package demo

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Fault is what one service version does wrong: fail a share of its
// requests and/or answer late.
type Fault struct {
	ErrorRate float64       `json:"errorRate"` // 0..1
	Delay     time.Duration `json:"delay"`
}

// Validate checks the fault's ranges.
func (f Fault) Validate() error {
	if !(f.ErrorRate >= 0 && f.ErrorRate <= 1) { // also refuses NaN
		return fmt.Errorf("errorRate %v: must be between 0 and 1", f.ErrorRate)
	}
	if f.Delay < 0 {
		return fmt.Errorf("delay %v: must not be negative", f.Delay)
	}
	return nil
}

// VersionKey names one version of one service: "reviews:v3".
type VersionKey struct{ Service, Version string }

func (k VersionKey) String() string { return k.Service + ":" + k.Version }

// Faults is the live fault table, changed at runtime by the control
// endpoint and read by every instance on every request.
type Faults struct {
	mu sync.RWMutex
	m  map[VersionKey]Fault
}

// NewFaults returns a table holding the given faults.
func NewFaults(initial map[VersionKey]Fault) *Faults {
	f := &Faults{m: map[VersionKey]Fault{}}
	maps.Copy(f.m, initial)
	return f
}

// Get returns the fault of one version (the zero Fault if none).
func (f *Faults) Get(k VersionKey) Fault {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.m[k]
}

// Set replaces the fault of one version; a zero Fault removes it.
func (f *Faults) Set(k VersionKey, fault Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if fault == (Fault{}) {
		delete(f.m, k)
		return
	}
	f.m[k] = fault
}

// All returns a copy of the table.
func (f *Faults) All() map[VersionKey]Fault {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return maps.Clone(f.m)
}

// String lists the faults in a stable order, for logs.
func (f *Faults) String() string {
	all := f.All()
	keys := slices.SortedFunc(maps.Keys(all), func(a, b VersionKey) int { return strings.Compare(a.String(), b.String()) })
	var parts []string
	for _, k := range keys {
		v := all[k]
		var p []string
		if v.ErrorRate > 0 {
			p = append(p, fmt.Sprintf("errors %.0f%%", v.ErrorRate*100))
		}
		if v.Delay > 0 {
			p = append(p, "delay "+v.Delay.String())
		}
		parts = append(parts, k.String()+" "+strings.Join(p, ", "))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "; ")
}

// ParseFaultFlag parses one --fail or --slow flag value, "SERVICE:VERSION=VALUE".
// For --fail the value is an error rate between 0 and 1; for --slow a
// duration such as 300ms.
func ParseFaultFlag(s string, slow bool) (VersionKey, Fault, error) {
	key, value, ok := strings.Cut(s, "=")
	if !ok {
		return VersionKey{}, Fault{}, fmt.Errorf("%q: want SERVICE:VERSION=VALUE", s)
	}
	svc, ver, ok := strings.Cut(strings.TrimSpace(key), ":")
	if !ok || svc == "" || ver == "" {
		return VersionKey{}, Fault{}, fmt.Errorf("%q: want SERVICE:VERSION before '='", s)
	}
	k := VersionKey{Service: svc, Version: ver}
	value = strings.TrimSpace(value)
	var f Fault
	if slow {
		d, err := time.ParseDuration(value)
		if err != nil {
			return k, f, fmt.Errorf("%q: delay: %w", s, err)
		}
		f.Delay = d
	} else {
		r, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return k, f, fmt.Errorf("%q: error rate: %w", s, err)
		}
		f.ErrorRate = r
	}
	if err := f.Validate(); err != nil {
		return k, f, fmt.Errorf("%q: %w", s, err)
	}
	return k, f, nil
}
