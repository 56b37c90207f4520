package rollout

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/protobuf/proto"

	"github.com/meshlens/meshlens/controlplane/config"
	"github.com/meshlens/meshlens/internal/meshtest"
)

// canaryYAML is a canary rollout of subset "canary" (v2) over "stable" (v1)
// judged every 200ms on a short window.
func canaryYAML(name, steps, minDuration string, minRequests, minSamples int, extra string) string {
	return fmt.Sprintf(`apiVersion: meshlens.io/v1alpha1
kind: Rollout
metadata: {name: %s, namespace: default}
spec:
  service: echo
  stable: stable
  candidate: canary
  strategy:
    canary: {steps: %s, minDuration: %s, minRequests: %d}
  analysis:
    interval: 200ms
    window: 3s
    minSamples: %d
%s`, name, steps, minDuration, minRequests, minSamples, extra)
}

func TestHealthyCanaryIsPromotedThroughAllSteps(t *testing.T) {
	r := newRig(t)
	r.startEngine()
	l := r.startLoad(r.client(), 4, 5*time.Millisecond)
	r.apply(canaryYAML("echo", "[20, 50, 100]", "800ms", 30, 30, ""))
	st := r.waitState("echo", Succeeded, 60*time.Second)

	var pushed []int32
	advances := 0
	for _, h := range st.History {
		if h.Type == "push" && h.Error == "" {
			pushed = append(pushed, h.Weights.Candidate)
		}
		if h.Type == "transition" && (h.Event == EvAdvance || h.Event == EvComplete) {
			advances++
			if !strings.Contains(h.Message, "passed") {
				t.Errorf("step transition without the numbers that passed it: %+v", h)
			}
		}
	}
	if fmt.Sprint(pushed) != "[20 50 100 100]" && fmt.Sprint(pushed) != "[20 50 100]" {
		t.Errorf("pushed candidate weights %v, want 20, 50, 100", pushed)
	}
	if advances != 3 {
		t.Errorf("want 3 passed steps, got %d; history:\n%s", advances, historyText(st))
	}
	if st.Weights != (Weights{Candidate: 100}) {
		t.Errorf("final weights %+v", st.Weights)
	}
	meshtest.Eventually(t, 30*time.Second, "clients see only the candidate", func() error {
		last := l.LastNot("v2")
		if got := l.Since(last.Add(time.Nanosecond)); time.Since(last) < 500*time.Millisecond || got["v2"] < 50 {
			return fmt.Errorf("last response not from the candidate at %s; since then %v", last.Format("15:04:05.000"), got)
		}
		return nil
	})
}

func TestFailingCandidateIsRolledBack(t *testing.T) {
	r := newRig(t)
	r.startEngine()
	l := r.startLoad(r.client(), 4, 5*time.Millisecond)
	r.apply(canaryYAML("echo", "[50, 100]", "1h", 30, 30, ""))
	r.waitState("echo", Progressing, 10*time.Second)
	start := time.Now()
	meshtest.Eventually(t, 10*time.Second, "clients reach the candidate", func() error {
		if got := l.Since(start); got["v2"] < 20 {
			return fmt.Errorf("clients saw %v", got)
		}
		return nil
	})
	st, took := r.breakCandidate(l, "echo")
	t.Logf("time from first bad response to clients seeing only stable: %v (target < 10s)", took.Round(time.Millisecond))
	fv := lastFailing(st)
	if fv == nil {
		t.Fatalf("no failing verdict in history:\n%s", historyText(st))
	}
	if fv.Candidate.ErrorRate <= 0.05 || !strings.Contains(strings.Join(fv.Reasons, ";"), "error rate") {
		t.Errorf("failing verdict does not name the error rate: %+v", fv)
	}
	if st.Weights != (Weights{Stable: 100}) {
		t.Errorf("weights after rollback %+v", st.Weights)
	}
}

func lastFailing(st Status) *Verdict {
	for i := len(st.History) - 1; i >= 0; i-- {
		if v := st.History[i].Verdict; v != nil && v.Result == Fail {
			return v
		}
	}
	return nil
}

func TestSlowerCandidateFailsStatisticalJudge(t *testing.T) {
	r := newRig(t)
	r.startEngine()
	r.v2.Delay.Store(int64(25 * time.Millisecond))
	r.startLoad(r.client(), 6, 2*time.Millisecond)
	r.apply(canaryYAML("echo", "[50, 100]", "1h", 30, 40, ""))
	st := r.waitState("echo", RolledBack, 40*time.Second)
	fv := lastFailing(st)
	if fv == nil {
		t.Fatalf("no failing verdict:\n%s", historyText(st))
	}
	if fv.Candidate.Errors != 0 {
		t.Errorf("the candidate had errors; this test wants a latency-only failure: %+v", fv.Candidate)
	}
	if fv.LatencyP >= 0.01 || !strings.Contains(strings.Join(fv.Reasons, ";"), "Mann-Whitney") {
		t.Errorf("failing verdict is not the rank test's: p=%g reasons %v", fv.LatencyP, fv.Reasons)
	}
	t.Logf("verdict: candidate median %.2f ms vs stable %.2f ms, U=%.0f z=%.2f p=%.3g effect=%.2f",
		fv.Candidate.MedianMs, fv.Stable.MedianMs, fv.LatencyU, fv.LatencyZ, fv.LatencyP, fv.LatencyEffect)
}

func TestLowTrafficNeitherPromotesNorRollsBack(t *testing.T) {
	r := newRig(t)
	r.startEngine()
	r.v2.FailCode.Store(int32(codes.Internal)) // would fail any judge that decided
	r.startLoad(r.client(), 1, 100*time.Millisecond)
	r.apply(canaryYAML("echo", "[50, 100]", "100ms", 1, 200, ""))
	r.waitState("echo", Progressing, 10*time.Second)
	time.Sleep(4 * time.Second)
	st := r.status("echo")
	if st.State != Progressing || st.Step != 0 {
		t.Fatalf("low traffic moved the rollout: %s step %d\n%s", st.State, st.Step, historyText(st))
	}
	verdicts := 0
	for _, h := range st.History {
		if h.Verdict != nil {
			verdicts++
			if h.Verdict.Result != Inconclusive {
				t.Errorf("verdict on low traffic decided: %+v", h.Verdict)
			}
		}
	}
	if verdicts < 5 {
		t.Errorf("want the judge to have looked at least 5 times, got %d verdicts", verdicts)
	}
	if st.LastVerdict == nil || st.LastVerdict.Candidate.Requests == 0 {
		t.Errorf("the judge saw no candidate traffic at all; the test does not test low traffic: %+v", st.LastVerdict)
	}
}

func TestRestartMidRolloutResumesSameStepAndWeights(t *testing.T) {
	r := newRig(t)
	r.startEngine()
	l := r.startLoad(r.client(), 4, 5*time.Millisecond)
	r.apply(canaryYAML("echo", "[30, 60, 100]", "600ms", 20, 20, ""))
	// Readers see a step's new state before its routes are written, so wait
	// for step 1's weights to be applied too: a stop in between would leave
	// the restarted engine a push to finish (which it does, as it should).
	meshtest.Eventually(t, 30*time.Second, "rollout reaches step 1 and applies its weights", func() error {
		if st := r.status("echo"); st.Step != 1 || st.State != Progressing || st.Applied == nil || *st.Applied != st.Weights {
			return fmt.Errorf("%s step %d weights %+v applied %+v", st.State, st.Step, st.Weights, st.Applied)
		}
		return nil
	})
	// meshlens goes away: engine and store stop; traffic stops so the
	// rollout cannot move on before the restart.
	r.stop()
	l.Stop()
	before := r.status("echo")
	vsBefore, _ := r.store.Get("VirtualService", ns, "echo")
	versionBefore := r.store.Snapshot().Version

	r.openStore()
	r.startEngine()
	meshtest.Eventually(t, 30*time.Second, "restarted engine resumes the rollout", func() error {
		st := r.status("echo")
		if st.State == "" {
			return fmt.Errorf("not loaded yet")
		}
		if st.State != Progressing || st.Step != before.Step || st.Weights != before.Weights {
			return fmt.Errorf("resumed as %s step %d weights %+v, want %s step %d weights %+v",
				st.State, st.Step, st.Weights, before.State, before.Step, before.Weights)
		}
		return nil
	})
	time.Sleep(300 * time.Millisecond) // several ticks: nothing may be re-pushed
	after := r.status("echo")
	if got := r.store.Snapshot().Version; got != versionBefore {
		t.Errorf("config version moved from %d to %d across the restart: a push happened", versionBefore, got)
	}
	vsAfter, _ := r.store.Get("VirtualService", ns, "echo")
	if !proto.Equal(vsBefore.Spec.(proto.Message), vsAfter.Spec.(proto.Message)) {
		t.Errorf("routes changed across the restart:\nbefore %v\nafter  %v", vsBefore.Spec, vsAfter.Spec)
	}
	if countActions(after) != countActions(before) || !after.StepStartedAt.Equal(before.StepStartedAt) {
		t.Errorf("transitions, pushes or step start changed across the restart: %d -> %d, step start %v -> %v\n%s",
			countActions(before), countActions(after), before.StepStartedAt, after.StepStartedAt, historyText(after))
	}
	// And it carries on from there with traffic.
	r.startLoad(r.client(), 4, 5*time.Millisecond)
	r.waitState("echo", Succeeded, 30*time.Second)
}

// countActions counts the transitions and pushes in a rollout's history.
func countActions(st Status) int {
	n := 0
	for _, h := range st.History {
		if h.Type != "verdict" {
			n++
		}
	}
	return n
}

func TestRoutesThatCannotBeAppliedAbortThenFail(t *testing.T) {
	r := newRig(t)
	r.startEngine()
	// The host's VirtualService "echo" comes from another source (the
	// cluster), which the API, and so the rollout's writes, may not change:
	// the store refuses every push.
	vs, _ := r.store.Get("VirtualService", ns, "echo")
	if _, _, err := r.store.SyncSource(context.Background(), config.SourceKube, []*config.Object{vs},
		map[string]string{vs.Key(): config.SourceKube + ":VirtualService/default/echo"}); err != nil {
		t.Fatal(err)
	}
	r.apply(canaryYAML("echo", "[50, 100]", "1h", 30, 30, ""))
	meshtest.Eventually(t, 20*time.Second, "rollout gives up", func() error {
		if st := r.status("echo"); st.State != Failed {
			return fmt.Errorf("state %s", st.State)
		}
		return nil
	})
	st := r.status("echo")
	var aborted, failedPushes int
	for _, h := range st.History {
		if h.Event == EvAbort && h.Source == "engine" {
			aborted++
		}
		if h.Type == "push" && h.Error != "" {
			failedPushes++
		}
	}
	if aborted != 1 || failedPushes != 8 {
		t.Fatalf("want 3 failed pushes, an abort, 5 failed rollback pushes; got %d aborts, %d failed pushes\n%s", aborted, failedPushes, historyText(st))
	}
	if !strings.Contains(st.Message, "rollback push keeps failing") {
		t.Errorf("message %q", st.Message)
	}
}

func TestRolloutTakesOverTheVirtualServiceOfItsHost(t *testing.T) {
	r := newRig(t)
	if _, _, err := r.store.Delete(context.Background(), "VirtualService", ns, "echo"); err != nil {
		t.Fatal(err)
	}
	r.apply(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo-routes, namespace: default}
spec:
  hosts: [echo.default.svc.cluster.local]
  http: [{route: [{destination: {host: echo, subset: stable}}]}]
`)
	r.startEngine()
	r.apply(canaryYAML("echo", "[50, 100]", "1h", 30, 30, ""))
	r.waitState("echo", Progressing, 30*time.Second)
	// Readers see a step's state before its routes are written: wait for
	// the first step's weights to be applied, then check where they went.
	var st Status
	meshtest.Eventually(t, 30*time.Second, "the first step's weights applied", func() error {
		if st = r.status("echo"); st.Applied == nil || *st.Applied != st.Weights {
			return fmt.Errorf("applied %+v, weights %+v", st.Applied, st.Weights)
		}
		return nil
	})
	if st.VirtualService != "echo-routes" {
		t.Fatalf("rollout writes %q, want it to take over echo-routes", st.VirtualService)
	}
	if _, ok := r.store.Get("VirtualService", ns, "echo"); ok {
		t.Fatal("a second VirtualService was created for the host")
	}
	c := r.client()
	meshtest.Eventually(t, 10*time.Second, "clients reach both versions", func() error {
		got := map[string]int{}
		for range 40 {
			resp, err := c.UnaryCall(context.Background(), &testgrpc.SimpleRequest{}, grpc.WaitForReady(true))
			if err != nil {
				return err
			}
			got[resp.GetHostname()]++
		}
		if got["v1"] == 0 || got["v2"] == 0 {
			return fmt.Errorf("50/50 split not in effect: %v", got)
		}
		return nil
	})
}
