package replicas

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/meshlens/meshlens/graph"
	"github.com/meshlens/meshlens/query"
)

// GET /api/v1/graph on any of three replicas answers, byte for byte, what
// one replica that saw all the traffic answers, in every view, also while
// many such queries run at once (each merged answer is written from a
// recycled buffer: one given back too early or shared would show here as
// another query's bytes).
func TestTheMergedGraphAnswerIsTheWholeMeshsGraphUnderConcurrentQueries(t *testing.T) {
	ctx := context.Background()
	end := time.Now()
	now := func() time.Time { return end }
	logger := slog.New(slog.DiscardHandler)
	var addrs []string
	var lives []*graph.Live
	var urls []string
	for range 3 {
		live := newLive(t, now)
		// A timeout no loaded machine reaches: this test is about what a
		// merged answer holds, not how fast (a partial one would differ).
		reps, err := New(live, Options{Peers: func() []string { return addrs }, Timeout: time.Minute}, logger, nil)
		if err != nil {
			t.Fatal(err)
		}
		e := echo.New()
		api := e.Group("/api/v1")
		query.RegisterRoutes(api, query.Deps{Live: live, Now: now, Replicas: reps})
		reps.RegisterRoutes(api)
		srv := httptest.NewServer(e)
		t.Cleanup(srv.Close)
		addrs = append(addrs, strings.TrimPrefix(srv.URL, "http://"))
		lives = append(lives, live)
		urls = append(urls, srv.URL)
	}
	all := newLive(t, now)
	e := echo.New()
	query.RegisterRoutes(e.Group("/api/v1"), query.Deps{Live: all, Now: now})
	single := httptest.NewServer(e)
	t.Cleanup(single.Close)
	recs := records(end, 3000)
	for i := 0; i < len(recs); i += 100 {
		batch := recs[i : i+100]
		_ = lives[(i/100)%3].ConsumeRecords(ctx, batch)
		_ = all.ConsumeRecords(ctx, batch)
	}
	for _, l := range append(lives, all) {
		l.Refresh()
	}
	get := func(url string) ([]byte, error) {
		resp, err := http.Get(url)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("%s: %s", resp.Status, body)
		}
		return body, err
	}
	queries := []string{"view=version", "view=service", "view=workload", "view=version&window=1m", "view=service&namespace=shop"}
	want := map[string][]byte{}
	for _, q := range queries {
		body, err := get(single.URL + "/api/v1/graph?" + q)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(body, []byte(`"edges":[{`)) {
			t.Fatalf("%s: the whole mesh's graph has no edges: %.200s", q, body)
		}
		want[q] = body
	}
	var wg sync.WaitGroup
	errs := make(chan error, 3*len(queries)*4)
	for round := range 4 {
		for i, u := range urls {
			for _, q := range queries {
				wg.Add(1)
				go func() {
					defer wg.Done()
					got, err := get(u + "/api/v1/graph?" + q)
					switch {
					case err != nil:
						errs <- fmt.Errorf("round %d, replica %d, %s: %w", round, i, q, err)
					case !bytes.Equal(got, want[q]):
						errs <- fmt.Errorf("round %d, replica %d, %s: the merged answer differs from the whole mesh's:\n got %.300s ... %s\nwant %.300s", round, i, q, got, got[max(0, len(got)-200):], want[q])
					}
				}()
			}
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
