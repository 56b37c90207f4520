package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/meshlens/meshlens/controlplane/xds"
	"github.com/meshlens/meshlens/internal/meshtest"
	"github.com/meshlens/meshlens/store/storetest"
)

// Three `meshlens serve` replicas outside Kubernetes (--peers, two of them
// --follower) on one ClickHouse database act as one for config: what is
// applied through the REST API on a follower reaches an Envoy-style ADS
// client of another replica, and so does a delete; a replica stopped while
// the config changes serves the change once started again on its data dir;
// and with the meshlens traffic provider the acting replica's canary
// weights reach a proxyless grpc-go client of a follower, for a Rollout
// applied on the other follower, and the followers show the rollout's state
// as the acting replica runs it, until it is deleted; the acting replica
// started again on an empty data dir resumes it where it was; a follower cut off
// from ClickHouse serves what is applied on it, says so in /readyz, and
// shares it once ClickHouse is back.
func TestReplicasOutsideKubernetesServeConfigAppliedOnAnyOfThem(t *testing.T) {
	dsn := storetest.DSN(t)
	v1, v2 := meshtest.StartBackend(t, "v1", "v1").Port, meshtest.StartBackend(t, "v2", "v2").Port
	const token = "replicas-config-test-operator-token-0123456789"
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte(token+" operator\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const n = 3
	var https, xdsAddrs, dirs [n]string
	for i := range n {
		https[i], xdsAddrs[i], dirs[i] = freeAddr(t), freeAddr(t), t.TempDir()
	}
	// Follower 1 reaches ClickHouse through a proxy the test takes down.
	chHost := strings.SplitN(os.Getenv(storetest.EnvDSN), "/", 4)[2] // clickhouse://HOST:PORT/
	chProxy := meshtest.StartFaultProxy(t, chHost)
	start := func(i int) *meshlensProcess {
		dsn := dsn
		if i == 1 {
			dsn = strings.Replace(dsn, chHost, chProxy.Addr(), 1)
		}
		args := []string{"--kubeconfig", "none", "--clickhouse", dsn, "--data-dir", dirs[i], "--tokens", tokens, "--xds", xdsAddrs[i],
			"--peers", strings.Join(https[:], ","), "--peer-timeout", "1s"}
		if i > 0 {
			args = append(args, "--follower")
		}
		return startMeshlensAt(t, https[i], args...)
	}
	var procs [n]*meshlensProcess
	for i := range n {
		procs[i] = start(i)
	}
	call := func(i int, method, path, body string) {
		t.Helper()
		if code, resp := meshtest.HTTP(t, method, "http://"+https[i]+path, token, body); code != http.StatusOK {
			t.Fatalf("%s %s on replica %d: %d %s", method, path, i, code, resp)
		}
	}
	weightsAre := func(i, w1, w2 int) {
		t.Helper()
		what := fmt.Sprintf("replica %d's xDS routes echo v1 %d, v2 %d", i, w1, w2)
		if w1 < 0 {
			what = fmt.Sprintf("replica %d's xDS routes echo without weights", i)
		}
		meshtest.Eventually(t, 20*time.Second, what, func() error {
			w, err := subsetWeights(xdsAddrs[i], "shop", "echo")
			if err != nil {
				return err
			}
			if (w1 < 0 && len(w) != 0) || (w1 >= 0 && (int(w["v1"]) != w1 || int(w["v2"]) != w2)) {
				return fmt.Errorf("weights %v", w)
			}
			return nil
		})
	}

	// Applied on follower 1: every replica serves it.
	call(1, http.MethodPost, "/api/v1/config", fmt.Sprintf(echoConfig, v1, v2)+"---\n"+routeTo(80, 20))
	for i := range n {
		weightsAre(i, 80, 20)
	}
	// Deleted on follower 2: no replica serves it.
	call(2, http.MethodDelete, "/api/v1/config/VirtualService/shop/echo", "")
	for i := range n {
		weightsAre(i, -1, 0)
	}

	// Follower 2 down while the acting replica applies routes: started
	// again, it serves them.
	procs[2].Stop(t)
	call(0, http.MethodPost, "/api/v1/config", routeTo(30, 70))
	weightsAre(1, 30, 70)
	procs[2] = start(2)
	weightsAre(2, 30, 70)

	// A Rollout applied on follower 2 is run by the acting replica (0),
	// whose canary weights reach the proxies of follower 1.
	call(2, http.MethodPost, "/api/v1/config", `apiVersion: meshlens.io/v1alpha1
kind: Rollout
metadata: {name: echo, namespace: shop}
spec:
  service: echo
  stable: v1
  candidate: v2
  strategy: {canary: {steps: [10, 100], minDuration: 1h, minRequests: 1000000}}
`)
	for i := range n {
		weightsAre(i, 90, 10)
	}
	// Follower 1 shows the rollout as the acting replica runs it, and
	// sends an operator to that replica for actions.
	type status struct {
		State   string `json:"state"`
		Step    int    `json:"step"`
		Weights struct {
			Stable    int `json:"stable"`
			Candidate int `json:"candidate"`
		} `json:"weights"`
		StartedAt     time.Time `json:"startedAt"`
		StepStartedAt time.Time `json:"stepStartedAt"`
		History       []any     `json:"history"`
	}
	var acting status
	if code, body := meshtest.HTTP(t, http.MethodGet, "http://"+https[0]+"/api/v1/rollouts/shop/echo", token, ""); code != http.StatusOK {
		t.Fatalf("the acting replica's rollout: %d %s", code, body)
	} else if err := json.Unmarshal([]byte(body), &acting); err != nil {
		t.Fatal(err)
	}
	if acting.State != "progressing" || acting.Weights.Stable != 90 || acting.Weights.Candidate != 10 {
		t.Fatalf("the acting replica's rollout: %+v", acting)
	}
	meshtest.Eventually(t, 20*time.Second, "follower 1 shows the acting replica's rollout state", func() error {
		code, body := meshtest.HTTP(t, http.MethodGet, "http://"+https[1]+"/api/v1/rollouts/shop/echo", token, "")
		if code != http.StatusOK {
			return fmt.Errorf("%d %s", code, body)
		}
		var got status
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			return err
		}
		if got.State != acting.State || got.Step != acting.Step || got.Weights != acting.Weights ||
			!got.StepStartedAt.Equal(acting.StepStartedAt) || len(got.History) < len(acting.History) {
			return fmt.Errorf("follower: %+v; acting replica: %+v", got, acting)
		}
		return nil
	})
	req, _ := http.NewRequest(http.MethodPost, "http://"+https[1]+"/api/v1/rollouts/shop/echo/pause", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Meshlens-Leader") != https[0] {
		t.Fatalf("pause on follower 1: %s, Meshlens-Leader %q; want 503 naming %s", resp.Status, resp.Header.Get("Meshlens-Leader"), https[0])
	}

	boot, err := xds.GRPCBootstrap{ServerAddr: xdsAddrs[1], NodeID: "sidecar~127.0.0.1~client.shop~shop.svc.cluster.local",
		Cluster: "client", Metadata: map[string]string{"NAMESPACE": "shop"}}.JSON()
	if err != nil {
		t.Fatal(err)
	}
	client := meshtest.XDSClient(t, boot, "echo.shop.svc.cluster.local:9080", nil)
	got := map[string]int{}
	for range 200 {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := client.UnaryCall(cctx, &testpb.SimpleRequest{})
		cancel()
		if err != nil {
			got["error: "+err.Error()]++
			continue
		}
		got[resp.GetHostname()]++
	}
	// 10% of 200: 20 expected; 70 (the 30/70 split before) is far above.
	if got["v1"]+got["v2"] != 200 || got["v2"] < 3 || got["v2"] > 45 {
		t.Errorf("calls through follower 1 went %v, want about 180 to v1 and 20 to v2", got)
	}

	// The acting replica pauses the rollout, stops, and starts again on an
	// empty data dir: its config comes back from the shared log, and the
	// rollout resumes paused at its step with its history, from the state
	// saved in ClickHouse, instead of starting over.
	call(0, http.MethodPost, "/api/v1/rollouts/shop/echo/pause", "")
	rolloutOn := func(i int) (status, error) {
		var st status
		code, body := meshtest.HTTP(t, http.MethodGet, "http://"+https[i]+"/api/v1/rollouts/shop/echo", token, "")
		if code != http.StatusOK {
			return st, fmt.Errorf("replica %d: %d %s", i, code, body)
		}
		return st, json.Unmarshal([]byte(body), &st)
	}
	paused, err := rolloutOn(0)
	if err != nil || paused.State != "paused" {
		t.Fatalf("after pause the acting replica shows %+v (%v)", paused, err)
	}
	meshtest.Eventually(t, 20*time.Second, "follower 1 shows the rollout paused", func() error {
		st, err := rolloutOn(1)
		if err == nil && st.State != "paused" {
			err = fmt.Errorf("state %s", st.State)
		}
		return err
	})
	procs[0].Stop(t)
	if err := os.RemoveAll(dirs[0]); err != nil {
		t.Fatal(err)
	}
	procs[0] = start(0)
	meshtest.Eventually(t, 30*time.Second, "the acting replica, on a new data dir, resumes the rollout paused", func() error {
		st, err := rolloutOn(0)
		if err != nil {
			return err
		}
		if st.State != "paused" || st.Step != paused.Step || st.Weights != paused.Weights || !st.StartedAt.Equal(paused.StartedAt) || len(st.History) < len(paused.History) {
			return fmt.Errorf("now %+v; before the restart %+v", st, paused)
		}
		return nil
	})
	weightsAre(0, 90, 10)

	// Follower 1 cut off from ClickHouse: it serves the change applied on
	// it, /readyz says it is not shared yet, and the others get it once
	// ClickHouse is back.
	chProxy.SetDown(true)
	call(1, http.MethodPost, "/api/v1/config", `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo-direct, namespace: shop}
spec:
  hosts: [echo-direct]
  http:
  - route:
    - destination: {host: echo, subset: v1}
`)
	meshtest.Eventually(t, 20*time.Second, "follower 1's /readyz names the unreachable shared config log", func() error {
		code, body := meshtest.HTTP(t, http.MethodGet, "http://"+https[1]+"/readyz", "", "")
		if code != http.StatusOK || !strings.Contains(body, "shared config log unreachable") || !strings.Contains(body, "1 changes of this replica wait") {
			return fmt.Errorf("%d %s", code, body)
		}
		return nil
	})
	sharedTo := func(i int) error {
		code, _ := meshtest.HTTP(t, http.MethodGet, "http://"+https[i]+"/api/v1/config/VirtualService/shop/echo-direct", token, "")
		if code != http.StatusOK {
			return fmt.Errorf("replica %d: VirtualService echo-direct: %d", i, code)
		}
		return nil
	}
	if err := sharedTo(1); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if sharedTo(0) == nil {
		t.Fatal("replica 0 has the change follower 1 could not share")
	}
	chProxy.SetDown(false)
	for _, i := range []int{0, 2} {
		meshtest.Eventually(t, 20*time.Second, fmt.Sprintf("replica %d gets follower 1's queued change", i), func() error { return sharedTo(i) })
	}

	// The Rollout deleted on follower 2: follower 1 no longer shows it.
	call(2, http.MethodDelete, "/api/v1/config/Rollout/shop/echo", "")
	meshtest.Eventually(t, 20*time.Second, "follower 1 forgets the deleted rollout", func() error {
		if code, body := meshtest.HTTP(t, http.MethodGet, "http://"+https[1]+"/api/v1/rollouts/shop/echo", token, ""); code != http.StatusNotFound {
			return fmt.Errorf("%d %s", code, body)
		}
		return nil
	})
}
