package rollout

import (
	"errors"
	"testing"
)

func TestStateMachineTable(t *testing.T) {
	all := []State{Pending, Progressing, Paused, Promoting, Succeeded, RollingBack, RolledBack, Failed, Refused}
	events := []Event{EvStart, EvAdvance, EvComplete, EvPause, EvResume, EvPromote, EvFail, EvAbort, EvAlert, EvPushed, EvGiveUp, EvRefuse}
	want := map[State]map[Event]State{
		Pending:     {EvStart: Progressing, EvPromote: Promoting, EvAbort: RollingBack, EvAlert: RollingBack, EvRefuse: Refused},
		Progressing: {EvAdvance: Progressing, EvComplete: Promoting, EvPause: Paused, EvPromote: Promoting, EvFail: RollingBack, EvAbort: RollingBack, EvAlert: RollingBack, EvRefuse: Refused},
		Paused:      {EvResume: Progressing, EvPromote: Promoting, EvFail: RollingBack, EvAbort: RollingBack, EvAlert: RollingBack, EvRefuse: Refused},
		Promoting:   {EvPushed: Succeeded, EvPause: Paused, EvAbort: RollingBack, EvAlert: RollingBack, EvRefuse: Refused},
		Succeeded:   {EvAbort: RollingBack},
		RollingBack: {EvPushed: RolledBack, EvGiveUp: Failed, EvRefuse: Refused},
		RolledBack:  {},
		Failed:      {},
		Refused:     {EvResume: Progressing, EvPromote: Promoting, EvAbort: RollingBack, EvAlert: RollingBack},
	}
	for _, s := range all {
		for _, ev := range events {
			got, err := next(s, ev)
			to, allowed := want[s][ev]
			switch {
			case allowed && (err != nil || got != to):
				t.Errorf("%s --%s--> got %s, %v; want %s", s, ev, got, err, to)
			case !allowed && !errors.Is(err, ErrTransition):
				t.Errorf("%s --%s--> allowed (to %s), want refused", s, ev, got)
			}
		}
	}
}

func TestDesiredWeightsByStateAndStrategy(t *testing.T) {
	canary := &Spec{Strategy: Strategy{Canary: &Canary{Steps: []int32{5, 20, 100}, Match: []Match{{Header: "x", Exact: "y"}}}}}
	bg := &Spec{Strategy: Strategy{BlueGreen: &BlueGreen{Preview: []Match{{Header: "x", Exact: "y"}}}}}
	for _, tc := range []struct {
		name  string
		spec  *Spec
		state State
		step  int
		want  Weights
	}{
		{"canary first step", canary, Progressing, 0, Weights{Stable: 95, Candidate: 5, Matched: true}},
		{"canary paused keeps its step", canary, Paused, 1, Weights{Stable: 80, Candidate: 20, Matched: true}},
		{"promoting is all candidate", canary, Promoting, 1, Weights{Candidate: 100}},
		{"rolled back is all stable", canary, RolledBack, 2, Weights{Stable: 100}},
		{"failed is all stable", canary, Failed, 2, Weights{Stable: 100}},
		{"blue-green preview only", bg, Progressing, 0, Weights{Stable: 100, Matched: true}},
		{"blue-green promoted", bg, Succeeded, 0, Weights{Candidate: 100}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := desiredWeights(tc.spec, tc.state, tc.step); got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}
