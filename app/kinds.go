package app

import (
	"cmp"

	"github.com/meshlens/meshlens/alerting"
	"github.com/meshlens/meshlens/controlplane/config"
	"github.com/meshlens/meshlens/rollout"
)

// Kinds is the registry of config kinds meshlens understands. The server
// builds its store with it and `meshlens validate` checks with it, so both
// accept the same config. Packages with their own kinds (rollout,
// alerting) add their KindSpecs here.
func Kinds(opts config.IstioOptions) (*config.Kinds, error) {
	specs := config.IstioKinds(opts)
	specs = append(specs, rollout.KindSpec(cmp.Or(opts.DomainSuffix, config.DefaultDomainSuffix)), alerting.KindSpec())
	return config.NewKinds(specs...)
}
