package rollout

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/meshlens/meshlens/internal/meshtest"
)

// TestResumeStartsTheStepOver: a step's minDuration counts judged time, not
// time spent paused, so a step paused for longer than its minDuration still
// needs the whole minDuration of fresh traffic after the resume.
func TestResumeStartsTheStepOver(t *testing.T) {
	r := newRig(t)
	r.startEngine()
	r.startLoad(r.client(), 4, 5*time.Millisecond)
	const minDuration = 1500 * time.Millisecond
	r.apply(canaryYAML("echo", "[50, 100]", minDuration.String(), 10, 10, ""))
	r.waitState("echo", Progressing, 10*time.Second)
	ctx := context.Background()
	if _, err := r.engine.Do(ctx, ns, "echo", EvPause, "test", "hold"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(minDuration + 500*time.Millisecond)
	if st := r.status("echo"); st.State != Paused || st.Step != 0 {
		t.Fatalf("a paused rollout moved: %s step %d", st.State, st.Step)
	}
	resumed := time.Now()
	if _, err := r.engine.Do(ctx, ns, "echo", EvResume, "test", "go on"); err != nil {
		t.Fatal(err)
	}
	st := r.status("echo")
	if st.StepStartedAt.Before(resumed) {
		t.Fatalf("step started at %v, before the resume at %v: paused time counts toward the step", st.StepStartedAt, resumed)
	}
	// Until minDuration after the resume the step cannot pass, whatever
	// the judge says. The clock is read after each status, so a status
	// read late on a busy machine (when the step may rightly have passed)
	// is not judged against the time before it.
	for range 1000 {
		st := r.status("echo")
		at := time.Since(resumed)
		if at >= minDuration {
			break
		}
		if st.Step != 0 || st.State != Progressing {
			t.Fatalf("%v after the resume the rollout is %s at step %d; the step needs %v of its own", at, st.State, st.Step, minDuration)
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.waitState("echo", Succeeded, 30*time.Second)
}

// TestChangingTheAnalysisKeepsTheStep: tuning the judge of a running
// rollout takes effect without starting it over; changing what it moves
// (here the steps) does start it over.
func TestChangingTheAnalysisKeepsTheStep(t *testing.T) {
	r := newRig(t)
	r.startEngine()
	r.startLoad(r.client(), 4, 5*time.Millisecond)
	r.apply(canaryYAML("echo", "[20, 50, 100]", "400ms", 10, 10, ""))
	meshtest.Eventually(t, 20*time.Second, "the rollout reaches its second step", func() error {
		if st := r.status("echo"); st.State != Progressing || st.Step < 1 {
			return fmt.Errorf("%s at step %d", st.State, st.Step)
		}
		return nil
	})
	if _, err := r.engine.Do(context.Background(), ns, "echo", EvPause, "test", "hold"); err != nil {
		t.Fatal(err)
	}
	before := r.status("echo")

	// Sync by hand: the engine's own loop takes the change asynchronously.
	sync := func() { r.engine.Sync(context.Background(), r.store.Snapshot()) }
	r.apply(canaryYAML("echo", "[20, 50, 100]", "400ms", 10, 25, "    maxErrorRate: 0.1\n"))
	sync()
	after := r.status("echo")
	if after.State != Paused || after.Step != before.Step || !after.StartedAt.Equal(before.StartedAt) || after.Weights != before.Weights {
		t.Fatalf("a changed analysis restarted the rollout: before %s step %d weights %+v started %v, after %s step %d weights %+v started %v",
			before.State, before.Step, before.Weights, before.StartedAt, after.State, after.Step, after.Weights, after.StartedAt)
	}

	r.apply(canaryYAML("echo", "[10, 100]", "400ms", 10, 25, "    maxErrorRate: 0.1\n"))
	sync()
	if st := r.status("echo"); st.StartedAt.Equal(before.StartedAt) || st.Steps[0] != 10 {
		t.Fatalf("changed steps did not start the rollout over: %s step %d steps %v", st.State, st.Step, st.Steps)
	}
	r.waitState("echo", Succeeded, 30*time.Second)
}
