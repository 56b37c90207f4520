package meshtest

import (
	"context"
	"sync"
	"testing"
	"time"
)

// Load calls a service continuously from several goroutines, each pausing
// between calls, and remembers what every call saw: the host (version)
// that answered, or "error". The rollout tests measure with it what
// traffic does while routes move.
type Load struct {
	mu     sync.Mutex
	seen   []Outcome
	cancel func()
	done   sync.WaitGroup
}

// Outcome is one response a caller saw.
type Outcome struct {
	At   time.Time
	Host string // "error" for a failed call
}

// StartLoad starts conc callers of call, which returns the host that
// answered. The load stops when the test ends, or on Stop.
func StartLoad(t testing.TB, conc int, pause time.Duration, call func(ctx context.Context) (string, error)) *Load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &Load{cancel: cancel}
	for range conc {
		l.done.Add(1)
		go func() {
			defer l.done.Done()
			for ctx.Err() == nil {
				cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
				host, err := call(cctx)
				ccancel()
				if ctx.Err() != nil {
					return
				}
				o := Outcome{At: time.Now(), Host: "error"}
				if err == nil {
					o.Host = host
				}
				l.mu.Lock()
				l.seen = append(l.seen, o)
				l.mu.Unlock()
				if pause > 0 {
					select {
					case <-time.After(pause):
					case <-ctx.Done():
					}
				}
			}
		}()
	}
	t.Cleanup(l.Stop)
	return l
}

// Stop ends the load and waits for the callers.
func (l *Load) Stop() { l.cancel(); l.done.Wait() }

// Since counts outcomes by host from t on.
func (l *Load) Since(t time.Time) map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]int{}
	for _, o := range l.seen {
		if !o.At.Before(t) {
			out[o.Host]++
		}
	}
	return out
}

// FirstAfter is the time of the first outcome from host at or after t.
func (l *Load) FirstAfter(t time.Time, host string) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, o := range l.seen {
		if !o.At.Before(t) && o.Host == host {
			return o.At, true
		}
	}
	return time.Time{}, false
}

// LastNot is the time of the last outcome not from host.
func (l *Load) LastNot(host string) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.seen) - 1; i >= 0; i-- {
		if l.seen[i].Host != host {
			return l.seen[i].At
		}
	}
	return time.Time{}
}
