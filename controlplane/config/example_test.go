package config_test

import (
	"fmt"

	"github.com/meshlens/meshlens/controlplane/config"
)

// A package plugs its own kind in next to Istio's with a KindSpec: how to
// decode its spec and how to check it against the rest of the config.
func ExampleNewKinds() {
	type rolloutSpec struct {
		VirtualService string `json:"virtualService"`
		StepWeight     int    `json:"stepWeight"`
	}
	rollout := config.KindSpec{
		APIVersions: []string{"meshlens.io/v1alpha1"},
		Kind:        "Rollout",
		Decode: func(js []byte) (any, error) {
			var s rolloutSpec
			if err := config.DecodeJSON(js, &s); err != nil {
				return nil, err
			}
			return &s, nil
		},
		Validate: func(o *config.Object, sn *config.Snapshot) []config.FieldError {
			s := o.Spec.(*rolloutSpec)
			if sn.Get(config.KindVirtualService, o.Meta.Namespace, s.VirtualService) == nil {
				return []config.FieldError{{Field: "virtualService", Message: "no VirtualService " + s.VirtualService}}
			}
			return nil
		},
	}
	kinds, err := config.NewKinds(append(config.IstioKinds(config.IstioOptions{}), rollout)...)
	if err != nil {
		panic(err)
	}
	_, err = kinds.Parse([]byte(`
apiVersion: meshlens.io/v1alpha1
kind: Rollout
metadata: {name: reviews}
spec: {virtualService: reviews, stepWeigth: 10}
`))
	fmt.Println(err)
	objs, _ := kinds.Parse([]byte(`
apiVersion: meshlens.io/v1alpha1
kind: Rollout
metadata: {name: reviews}
spec: {virtualService: reviews, stepWeight: 10}
`))
	fmt.Println(kinds.Validate(nil, objs))
	// Output:
	// invalid config: Rollout/default/reviews stepWeigth: unknown field "stepWeigth"
	// invalid config: Rollout/default/reviews virtualService: no VirtualService reviews
}
