package config_test

import (
	"fmt"

	"github.com/meshlens/meshlens/controlplane/config"
)

// A package plugs its own kind in next to Istio's with a KindSpec: how to
// decode its spec, how to check it on its own (errors refuse it) and how to
// analyse it against the rest of the config (warnings do not).
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
		Validate: func(o *config.Object) []config.FieldError {
			if o.Spec.(*rolloutSpec).StepWeight <= 0 {
				return []config.FieldError{{Field: "stepWeight", Message: "must be positive"}}
			}
			return nil
		},
		Analyze: func(o *config.Object, sn *config.Snapshot) []config.Warning {
			s := o.Spec.(*rolloutSpec)
			if sn.Get(config.KindVirtualService, o.Meta.Namespace, s.VirtualService) == nil {
				return []config.Warning{{Code: config.CodeReferencedResourceNotFound, Field: "virtualService",
					Message: "Referenced VirtualService not found: " + s.VirtualService}}
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
	warnings, err := kinds.Validate(nil, objs)
	fmt.Println(err)
	for _, w := range warnings {
		fmt.Println(w)
	}
	// Output:
	// invalid config: Rollout/default/reviews stepWeigth: unknown field "stepWeigth"
	// <nil>
	// [IST0101] Rollout/default/reviews virtualService: Referenced VirtualService not found: reviews
}
