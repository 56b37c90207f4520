// Package rollout runs progressive delivery: a Rollout object (apiVersion
// meshlens.io/v1alpha1) names a service, its stable and candidate subsets
// and one strategy — canary weight steps, a blue-green switch after a
// preview, or an A/B test on headers or cookies — and the engine moves
// traffic while a judge watches the candidate on live per-version stats.
//
// # Routes are config
//
// A rollout owns the routes of its host: the engine writes one
// VirtualService (spec.virtualService; by default the mesh VirtualService
// that already routes the host, which it takes over, else one named after
// the service; annotated meshlens.io/rollout) through config.Store.Apply. The store
// validates it, persists it, and only then publishes the snapshot that the
// xDS server pushes, so every move of traffic goes through the same
// validated, durable path as a user's apply, and one apply is one xDS push:
// a rollback is a single apply of the stable-only routes.
//
// # Traffic providers
//
// Where the routes are written is a Traffic provider, chosen per rollout by
// spec.trafficProvider (default Options.TrafficProvider): "meshlens" is the
// config store above; "istio" (a VirtualService held by the Kubernetes API
// server, for istiod) and "gatewayAPI" (an HTTPRoute's backendRefs weights)
// are implemented in controlplane/kube, which this package does not import.
// A provider reports what a failed write means (ErrUnavailable: retried
// until it lands, a rollback never gives up; ErrMissing: waits; ErrRefused
// and ErrManaged: state refused; ErrEdited: someone changed the routes, the
// rollout pauses and writes nothing until an operator decides), and the
// rollout's RoutesApplied condition says so.
//
// # State machine
//
// States, events and transitions are one table (machine.go). Before routes
// are applied the new state (with the weights it implies) is written to
// DATA_DIR/rollouts.json (temp file, fsync, rename); the store persists the
// routes before pushing them. After a restart the engine reads its state,
// and re-applies the same routes, which the store finds unchanged: nothing
// is pushed, clients keep their weights, the step keeps its start time.
// Verdicts between transitions are kept in memory and written with the next
// transition or push.
//
// # Judge
//
// Each interval a progressing rollout gets a verdict from the live graph
// over a sliding window (capped at the time since the step began).
// Thresholds are hypothesis tests at Alpha, not point comparisons: max
// error rate by an exact binomial tail, max p99 by the binomial tail of the
// share of samples above it (more than 1% means the p99 is over). The
// comparison with stable is one-sided: error rates by Fisher's exact test
// together with Newcombe's score bound on the increase (the pooled z is
// reported), latency by a Mann-Whitney U test (normal approximation,
// tie-corrected). A comparison fails only when it is significant and the
// effect is larger than a practical minimum, so large samples do not fail a
// candidate for a negligible difference and small ones do not fail it for
// a lucky error or two. Below MinSamples candidate requests a verdict is
// inconclusive: low traffic neither promotes nor rolls back. FailureLimit
// failing verdicts in a row roll back.
//
// A step passes when its verdict passes, it has lasted MinDuration and the
// candidate served MinRequests (and MinSuccess successes) since it began.
package rollout
