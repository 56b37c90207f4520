// Package meshconfig reads the part of Istio's MeshConfig that meshlens
// uses: extensionProviders, the external authorization services that
// AuthorizationPolicy action CUSTOM names (envoyExtAuthzHttp,
// envoyExtAuthzGrpc). The file is what Istio keeps in the `mesh` key of
// its istio ConfigMap, in YAML, parsed into istio.io/api's MeshConfig;
// every other field is accepted and reported as ignored.
package meshconfig

import (
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"

	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/reflect/protoreflect"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	"sigs.k8s.io/yaml"

	"github.com/meshlens/meshlens/controlplane/config"
)

// Providers are a MeshConfig's extension providers by name.
type Providers map[string]*meshv1alpha1.MeshConfig_ExtensionProvider

// Flags holds --mesh-config.
type Flags struct {
	Path string
}

// RegisterFlags adds --mesh-config to fs.
func (f *Flags) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&f.Path, "mesh-config", f.Path,
		"YAML file of Istio's MeshConfig (the `mesh` key of the istio ConfigMap): its extensionProviders envoyExtAuthzHttp / envoyExtAuthzGrpc are the ext_authz services AuthorizationPolicy action CUSTOM names; other fields are ignored (logged); empty: no providers, CUSTOM policies deny what they match")
}

// Load reads and validates the file of --mesh-config: the providers, and
// the top-level fields set but not used by meshlens. No path: no providers.
func (f Flags) Load() (Providers, []string, error) {
	if f.Path == "" {
		return nil, nil, nil
	}
	data, err := os.ReadFile(f.Path)
	if err != nil {
		return nil, nil, fmt.Errorf("--mesh-config: %w", err)
	}
	p, ignored, err := Parse(data)
	if err != nil {
		return nil, nil, fmt.Errorf("--mesh-config %s: %w", f.Path, err)
	}
	return p, ignored, nil
}

// Parse decodes a MeshConfig in YAML (or JSON) and validates its extension
// providers; errors name the field. ignored lists the other top-level
// fields it sets, which meshlens does not use.
func Parse(data []byte) (Providers, []string, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, nil, fmt.Errorf("not YAML: %w", err)
	}
	mc := &meshv1alpha1.MeshConfig{}
	if strings.TrimSpace(string(js)) != "null" {
		if err := config.DecodeProto(js, mc); err != nil {
			return nil, nil, err
		}
	}
	var ignored []string
	mc.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		if fd.Name() != "extension_providers" {
			ignored = append(ignored, fd.JSONName())
		}
		return true
	})
	slices.Sort(ignored)
	providers := Providers{}
	var errs config.FieldErrors
	add := func(field, format string, args ...any) {
		errs = append(errs, config.FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	for i, p := range mc.GetExtensionProviders() {
		path := fmt.Sprintf("extensionProviders[%d]", i)
		switch {
		case p.GetName() == "":
			add(path+".name", "required: AuthorizationPolicy provider.name refers to it")
		case providers[p.GetName()] != nil:
			add(path+".name", "provider %q is defined twice", p.GetName())
		default:
			providers[p.GetName()] = p
		}
		switch pr := p.GetProvider().(type) {
		case *meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExtAuthzHttp:
			h := pr.EnvoyExtAuthzHttp
			extAuthzCommon(path+".envoyExtAuthzHttp", h.GetService(), h.GetPort(), h.GetStatusOnError(), h.GetTimeout().AsDuration().Seconds(), h.GetTimeout() != nil, add)
			if pp := h.GetPathPrefix(); pp != "" {
				if _, err := url.Parse(pp); err != nil || !strings.HasPrefix(pp, "/") {
					add(path+".envoyExtAuthzHttp.pathPrefix", "%q must be a path starting with /", pp)
				}
			}
			for _, list := range []struct {
				name string
				v    []string
			}{{"includeRequestHeadersInCheck", h.GetIncludeRequestHeadersInCheck()}, {"headersToUpstreamOnAllow", h.GetHeadersToUpstreamOnAllow()},
				{"headersToDownstreamOnDeny", h.GetHeadersToDownstreamOnDeny()}, {"headersToDownstreamOnAllow", h.GetHeadersToDownstreamOnAllow()}} {
				for j, v := range list.v {
					if v == "" {
						add(fmt.Sprintf("%s.envoyExtAuthzHttp.%s[%d]", path, list.name, j), "must not be empty")
					}
				}
			}
			for k := range h.GetIncludeAdditionalHeadersInCheck() {
				if k == "" {
					add(path+".envoyExtAuthzHttp.includeAdditionalHeadersInCheck", "header names must not be empty")
				}
			}
		case *meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExtAuthzGrpc:
			g := pr.EnvoyExtAuthzGrpc
			extAuthzCommon(path+".envoyExtAuthzGrpc", g.GetService(), g.GetPort(), g.GetStatusOnError(), g.GetTimeout().AsDuration().Seconds(), g.GetTimeout() != nil, add)
		case nil:
			add(path, "names no provider type (envoyExtAuthzHttp, envoyExtAuthzGrpc, ...)")
		}
	}
	if len(errs) > 0 {
		return nil, nil, errs
	}
	return providers, ignored, nil
}

func extAuthzCommon(path, service string, port uint32, statusOnError string, timeout float64, hasTimeout bool, add func(string, string, ...any)) {
	if service == "" {
		add(path+".service", "required: the authorization service's host (a Kubernetes Service or ServiceEntry host, optionally NAMESPACE/HOST)")
	}
	if port == 0 || port > 65535 {
		add(path+".port", "port %d is out of range 1-65535", port)
	}
	if statusOnError != "" {
		code, err := strconv.Atoi(statusOnError)
		if _, known := typev3.StatusCode_name[int32(code)]; err != nil || !known {
			add(path+".statusOnError", "%q is not an HTTP status Envoy knows (e.g. 403, 500, 503)", statusOnError)
		}
	}
	if hasTimeout && timeout <= 0 {
		add(path+".timeout", "must be positive")
	}
}

// ExtAuthz is an ext_authz provider, resolved for translation.
type ExtAuthz struct {
	// Name is the provider's name.
	Name string
	// Namespace and Host are the service (Host as written; Namespace ""
	// when the service named none).
	Namespace, Host string
	Port            uint32
	HTTP            *meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationHttpProvider
	GRPC            *meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationGrpcProvider
}

// ErrNotExtAuthz is returned by ExtAuthzProvider for a provider of another
// type (a tracer, an access log).
var ErrNotExtAuthz = errors.New("not an envoyExtAuthzHttp or envoyExtAuthzGrpc provider")

// ExtAuthzProvider is the ext_authz provider of that name: false when
// there is none, ErrNotExtAuthz when the provider is of another type.
func (p Providers) ExtAuthzProvider(name string) (*ExtAuthz, bool, error) {
	ep, ok := p[name]
	if !ok {
		return nil, false, nil
	}
	out := &ExtAuthz{Name: name}
	var service string
	switch pr := ep.GetProvider().(type) {
	case *meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExtAuthzHttp:
		out.HTTP, service, out.Port = pr.EnvoyExtAuthzHttp, pr.EnvoyExtAuthzHttp.GetService(), pr.EnvoyExtAuthzHttp.GetPort()
	case *meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExtAuthzGrpc:
		out.GRPC, service, out.Port = pr.EnvoyExtAuthzGrpc, pr.EnvoyExtAuthzGrpc.GetService(), pr.EnvoyExtAuthzGrpc.GetPort()
	default:
		return nil, true, ErrNotExtAuthz
	}
	out.Host = service
	if ns, host, ok := strings.Cut(service, "/"); ok {
		out.Namespace, out.Host = ns, host
	}
	return out, true, nil
}

// CheckExtAuthz says why AuthorizationPolicy action CUSTOM cannot use the
// provider name (nil: it can), for config.IstioOptions.ExtAuthzProvider.
func (p Providers) CheckExtAuthz(name string) error {
	_, ok, err := p.ExtAuthzProvider(name)
	switch {
	case !ok && len(p) == 0:
		return fmt.Errorf("extension provider %q: meshlens has no mesh config (--mesh-config), so no providers", name)
	case !ok:
		return fmt.Errorf("extension provider %q is not in --mesh-config's extensionProviders", name)
	case err != nil:
		return fmt.Errorf("extension provider %q: %w", name, err)
	}
	return nil
}
