package alerting

import (
	"reflect"
	"testing"
)

func TestMergeAlertsTakesRuleAlertsOfTheEvaluatingReplicaAndEveryAlertmanagerAlertOnce(t *testing.T) {
	rule := func(fp string) ActiveAlert {
		return ActiveAlert{Source: "rule", Rule: "shop/" + fp, State: "firing", Fingerprint: fp}
	}
	am := func(fp string) ActiveAlert {
		return ActiveAlert{Source: "alertmanager", State: "firing", Fingerprint: fp}
	}
	for _, tc := range []struct {
		name string
		in   []ReplicaAlerts
		want []ActiveAlert
	}{
		{"the leader's rule alerts, a former leader's stale ones left out",
			[]ReplicaAlerts{{Evaluating: false, Alerts: []ActiveAlert{rule("stale")}}, {Evaluating: true, Alerts: []ActiveAlert{rule("errors")}}},
			[]ActiveAlert{rule("errors")}},
		{"Alertmanager alerts of every replica, each once",
			[]ReplicaAlerts{{Alerts: []ActiveAlert{am("disk"), am("cpu")}}, {Evaluating: true, Alerts: []ActiveAlert{am("disk"), rule("errors")}}},
			[]ActiveAlert{rule("errors"), am("cpu"), am("disk")}},
		{"nobody evaluates: no rule alerts", []ReplicaAlerts{{Alerts: []ActiveAlert{rule("errors")}}, {}}, []ActiveAlert{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := MergeAlerts(tc.in); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}
