package main

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/meshlens/meshlens/auth"
	"github.com/meshlens/meshlens/controlplane/config"
	"github.com/meshlens/meshlens/graph"
	"github.com/meshlens/meshlens/internal/meshtest"
	"github.com/meshlens/meshlens/rollout"
)

func TestCLIRolloutStatusPauseResumeAbort(t *testing.T) {
	t.Setenv("MESHLENS_TOKEN", "")
	t.Setenv("MESHLENS_SERVER", "")
	dataDir := t.TempDir()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	kinds, err := config.NewKinds(append(config.IstioKinds(config.IstioOptions{}), rollout.KindSpec(""))...)
	if err != nil {
		t.Fatal(err)
	}
	store, err := config.Open(dataDir, kinds, logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	live, err := graph.New(graph.Config{}, logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	eng, err := rollout.New(store, live, rollout.Options{DataDir: dataDir, Tick: 20 * time.Millisecond}, logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	meshtest.Background(t, eng.Run)
	a, err := auth.Load(auth.Config{DataDir: dataDir}, logger)
	if err != nil {
		t.Fatal(err)
	}
	e := echo.New()
	eng.RegisterRoutes(e.Group("/api/v1", a.Viewer(false)), a.Operator())
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)

	objs, err := kinds.Parse([]byte(auditRollout))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := store.Apply(context.Background(), objs); err != nil {
		t.Fatal(err)
	}
	common := []string{"--server", srv.URL, "--data-dir", dataDir}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"status"}, "progressing"},
		{[]string{"status", "reviews"}, "v1 (v1) 90%, v2 (v2) 10%"},
		{[]string{"pause", "reviews"}, "progressing -> paused"},
		{[]string{"resume", "reviews", "-n", "default"}, "paused -> progressing"},
		{[]string{"abort", "reviews"}, "progressing -> rolled back"},
		{[]string{"status", "reviews"}, "State:      rolled back"},
		{[]string{"status", "reviews", "-o", "json"}, `"state": "rolled back"`},
	} {
		out, errOut, err := run(t, runRollout, append(tc.args, common...)...)
		if err != nil || !strings.Contains(out, tc.want) {
			t.Fatalf("rollout %v: %v\nstdout:\n%s\nstderr:\n%s\nwant %q", tc.args, err, out, errOut, tc.want)
		}
	}
	_, _, err = run(t, runRollout, append([]string{"promote", "ghost"}, common...)...)
	if err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("promote of an unknown rollout: %v", err)
	}
	_, _, err = run(t, runRollout, append([]string{"resume", "reviews"}, common...)...)
	if err == nil || !strings.Contains(err.Error(), "cannot resume") {
		t.Fatalf("resume of a rolled back rollout: %v", err)
	}
}
