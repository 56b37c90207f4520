package rollout

import (
	"strings"
	"testing"
	"time"
)

// A rollout whose traffic provider needs the cluster, on a meshlens without
// one, is refused with a condition that says what to do; nothing is
// written to meshlens' own config.
func TestRolloutWithoutItsTrafficProviderIsRefused(t *testing.T) {
	r := newRig(t)
	r.startEngine()
	before := r.store.Snapshot().Version
	r.apply(canaryYAML("echo", "[50, 100]", "1h", 30, 30, "  trafficProvider: istio\n"))
	st := r.waitState("echo", Refused, 5*time.Second)
	if len(st.Conditions) != 1 || st.Conditions[0].Reason != ReasonNoProvider || !strings.Contains(st.Conditions[0].Message, "--kubeconfig") {
		t.Errorf("conditions %+v, want NoProvider naming --kubeconfig", st.Conditions)
	}
	if st.Provider != ProviderIstio || st.Applied != nil {
		t.Errorf("provider %q applied %+v", st.Provider, st.Applied)
	}
	if got := r.store.Snapshot().Version; got != before+1 { // the Rollout itself
		t.Errorf("config version %d -> %d: the refused rollout wrote routes", before, got)
	}
}
