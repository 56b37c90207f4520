package demo

import (
	"context"
	"maps"
	"math"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
)

// maxInFlight bounds the load generator's concurrent requests, so a slow
// version cannot make it grow without limit; requests over it are skipped
// and counted.
const maxInFlight = 2000

// Stats are the load generator's counters since it started.
type Stats struct {
	Sent     uint64            `json:"sent"`
	OK       uint64            `json:"ok"`
	Errors   uint64            `json:"errors"`
	Skipped  uint64            `json:"skipped"` // not sent: too many in flight
	ByCode   map[string]uint64 `json:"byCode"`
	ByReview map[string]uint64 `json:"byReviewsVersion"` // successful requests by the reviews version that served them
	// LastError is the most recent failure's message.
	LastError string `json:"lastError,omitempty"`
}

// loadGen sends requests to the front service at an adjustable rate.
type loadGen struct {
	stub    testpb.TestServiceClient
	timeout time.Duration

	rateBits atomic.Uint64 // float64 rps
	changed  chan struct{}

	sent, ok, errs, skipped atomic.Uint64
	mu                      sync.Mutex
	byCode                  map[string]uint64
	byReview                map[string]uint64
	lastErr                 string
}

func newLoadGen(stub testpb.TestServiceClient, rps float64, timeout time.Duration) *loadGen {
	g := &loadGen{stub: stub, timeout: timeout, changed: make(chan struct{}, 1), byCode: map[string]uint64{}, byReview: map[string]uint64{}}
	g.SetRate(rps)
	return g
}

// SetRate changes the request rate; 0 pauses the load.
func (g *loadGen) SetRate(rps float64) {
	g.rateBits.Store(math.Float64bits(rps))
	select {
	case g.changed <- struct{}{}:
	default:
	}
}

// Rate is the current request rate.
func (g *loadGen) Rate() float64 { return math.Float64frombits(g.rateBits.Load()) }

// run sends requests until ctx ends, then waits for those in flight.
func (g *loadGen) run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, maxInFlight)
	next := time.Now()
	for {
		rps := g.Rate()
		if rps <= 0 {
			select {
			case <-ctx.Done():
				return
			case <-g.changed:
				next = time.Now()
				continue
			}
		}
		interval := time.Duration(float64(time.Second) / rps)
		next = next.Add(interval)
		if now := time.Now(); next.Before(now.Add(-time.Second)) {
			// Fell behind by more than a second (a stall, or a rate cut):
			// do not burst to catch up.
			next = now
		}
		t := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-g.changed:
			t.Stop()
			next = time.Now()
			continue
		case <-t.C:
		}
		select {
		case sem <- struct{}{}:
		default:
			g.skipped.Add(1)
			continue
		}
		g.sent.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			g.once(ctx)
		}()
	}
}

var reviewsVersion = regexp.MustCompile(`reviews-(v[0-9]+)`)

func (g *loadGen) once(ctx context.Context) {
	// A request in flight at shutdown is allowed to finish, within its timeout.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), g.timeout)
	defer cancel()
	resp, err := g.stub.UnaryCall(rctx, &testpb.SimpleRequest{})
	code := status.Code(err)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.byCode[code.String()]++
	if code != codes.OK {
		g.errs.Add(1)
		g.lastErr = err.Error()
		return
	}
	g.ok.Add(1)
	if m := reviewsVersion.FindSubmatch(resp.GetPayload().GetBody()); m != nil {
		g.byReview[string(m[1])]++
	}
}

// Stats returns a copy of the counters.
func (g *loadGen) Stats() Stats {
	g.mu.Lock()
	defer g.mu.Unlock()
	return Stats{
		Sent: g.sent.Load(), OK: g.ok.Load(), Errors: g.errs.Load(), Skipped: g.skipped.Load(),
		ByCode: maps.Clone(g.byCode), ByReview: maps.Clone(g.byReview), LastError: g.lastErr,
	}
}
