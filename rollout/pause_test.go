package rollout

import (
	"context"
	"testing"
	"time"
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
	// the judge says; polling stops well before that.
	for time.Since(resumed) < minDuration-300*time.Millisecond {
		if st := r.status("echo"); st.Step != 0 || st.State != Progressing {
			t.Fatalf("%v after the resume the rollout is %s at step %d; the step needs %v of its own", time.Since(resumed), st.State, st.Step, minDuration)
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.waitState("echo", Succeeded, 30*time.Second)
}
