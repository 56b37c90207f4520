package rollout

import "fmt"

// State is where a rollout is in its life.
type State string

// States.
const (
	Pending     State = "pending"
	Progressing State = "progressing"
	Paused      State = "paused"
	Promoting   State = "promoting"
	Succeeded   State = "succeeded"
	RollingBack State = "rolling back"
	RolledBack  State = "rolled back"
	Failed      State = "failed"
	// Refused: the routes' owner refused the rollout's write (RBAC,
	// admission, or another controller manages the object). Nothing more is
	// written; traffic stays as last applied. Resume or abort tries again.
	Refused State = "refused"
)

// Event is what happens to a rollout.
type Event string

// Events.
const (
	EvStart    Event = "start"    // the engine takes the rollout on
	EvAdvance  Event = "advance"  // a canary step passed; the next one starts
	EvComplete Event = "complete" // the last step (or the A/B test, or a blue-green preview) passed
	EvPause    Event = "pause"    // operator
	EvResume   Event = "resume"   // operator
	EvPromote  Event = "promote"  // operator: skip the remaining steps
	EvFail     Event = "fail"     // the judge failed the candidate
	EvAbort    Event = "abort"    // operator: roll back
	EvAlert    Event = "alert"    // an alert (own rule or Alertmanager) named the rollout
	EvPushed   Event = "pushed"   // the routes of a promoting / rolling-back rollout are applied
	EvGiveUp   Event = "give up"  // a rollback push kept failing
	EvRefuse   Event = "refuse"   // the API server (or another controller's ownership) refused the routes
)

type transition struct {
	from  State
	event Event
	to    State
}

// transitions is the whole state machine. Anything not listed is refused.
var transitions = []transition{
	{Pending, EvStart, Progressing},

	{Progressing, EvAdvance, Progressing},
	{Progressing, EvComplete, Promoting},
	{Progressing, EvPause, Paused},
	{Paused, EvResume, Progressing},
	// A promotion that finds the routes changed by someone else waits
	// for an operator, as a progressing step does.
	{Promoting, EvPause, Paused},

	{Pending, EvPromote, Promoting},
	{Progressing, EvPromote, Promoting},
	{Paused, EvPromote, Promoting},
	{Promoting, EvPushed, Succeeded},

	{Progressing, EvFail, RollingBack},
	{Paused, EvFail, RollingBack},

	{Pending, EvAbort, RollingBack},
	{Progressing, EvAbort, RollingBack},
	{Paused, EvAbort, RollingBack},
	{Promoting, EvAbort, RollingBack},
	// Blue-green switch-back, or undoing any promotion: one push to stable.
	{Succeeded, EvAbort, RollingBack},

	{Pending, EvAlert, RollingBack},
	{Progressing, EvAlert, RollingBack},
	{Paused, EvAlert, RollingBack},
	{Promoting, EvAlert, RollingBack},

	{RollingBack, EvPushed, RolledBack},
	{RollingBack, EvGiveUp, Failed},

	// A write refused by the API server stops the rollout where its
	// routes are; the operator (or an alert) tries again.
	{Pending, EvRefuse, Refused},
	{Progressing, EvRefuse, Refused},
	{Paused, EvRefuse, Refused},
	{Promoting, EvRefuse, Refused},
	{RollingBack, EvRefuse, Refused},
	{Refused, EvResume, Progressing},
	{Refused, EvPromote, Promoting},
	{Refused, EvAbort, RollingBack},
	{Refused, EvAlert, RollingBack},
}

// next returns the state an event leads to, or an error naming why not.
func next(from State, ev Event) (State, error) {
	for _, t := range transitions {
		if t.from == from && t.event == ev {
			return t.to, nil
		}
	}
	return from, fmt.Errorf("%w: cannot %s a rollout that is %s", ErrTransition, ev, from)
}

// Terminal states wait for a new spec (a new candidate) to start again.
func (s State) Terminal() bool {
	return s == Succeeded || s == RolledBack || s == Failed
}

// servesCandidateFully says whether the state's routes send all traffic to
// the candidate.
func (s State) servesCandidateFully() bool { return s == Promoting || s == Succeeded }

// servesStableOnly says whether the state's routes send all traffic to
// stable.
func (s State) servesStableOnly() bool {
	return s == Pending || s == RollingBack || s == RolledBack || s == Failed
}
