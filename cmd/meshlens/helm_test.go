package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	chartcommon "helm.sh/helm/v4/pkg/chart/common"
	chartutil "helm.sh/helm/v4/pkg/chart/common/util"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/meshlens/meshlens/app"
	"github.com/meshlens/meshlens/auth"
	"github.com/meshlens/meshlens/internal/kubetest"
)

// The Helm chart deploy/helm/meshlens is rendered by Helm's own engine
// (helm.sh/helm/v4: chart loader, values coalescing, template engine, as
// `helm template` runs them) with its default values and variations of them.
// Every rendering goes through deploy_test's checks, as
// deploy/kubernetes/*.yaml does.

const chartDir = "deploy/helm/meshlens"

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	c, err := loader.LoadDir(filepath.Join(repoRoot(t), chartDir))
	if err != nil {
		t.Fatalf("load %s: %v", chartDir, err)
	}
	return c
}

// renderChart renders the chart for a release with values given as YAML,
// as `helm template` (cfg nil) or `helm install/upgrade` against the API
// server of cfg (where `lookup` sees the cluster). It returns the objects,
// and NOTES.txt.
func renderChart(t *testing.T, release, namespace, values string, cfg *rest.Config, upgrade bool) (deployManifests, string, error) {
	t.Helper()
	c := loadChart(t)
	var vals map[string]any
	if err := yaml.Unmarshal([]byte(values), &vals); err != nil {
		t.Fatalf("values %q: %v", values, err)
	}
	revision := 1
	if upgrade {
		revision = 2
	}
	// Against a cluster, .Capabilities.APIVersions are its own, as helm
	// install discovers them (the GatewayClass needs the Gateway API's).
	var caps *chartcommon.Capabilities
	if cfg != nil {
		dc, err := discovery.NewDiscoveryClientForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		_, resources, err := dc.ServerGroupsAndResources()
		if err != nil {
			t.Fatal(err)
		}
		caps = chartcommon.DefaultCapabilities.Copy()
		for _, rl := range resources {
			caps.APIVersions = append(caps.APIVersions, rl.GroupVersion)
			for _, r := range rl.APIResources {
				caps.APIVersions = append(caps.APIVersions, rl.GroupVersion+"/"+r.Kind)
			}
		}
	}
	top, err := chartutil.ToRenderValues(c, vals, chartcommon.ReleaseOptions{
		Name: release, Namespace: namespace, Revision: revision, IsInstall: !upgrade, IsUpgrade: upgrade}, caps)
	if err != nil {
		return nil, "", err
	}
	var out map[string]string
	if cfg != nil {
		out, err = engine.RenderWithClient(c, top, cfg)
	} else {
		out, err = engine.Render(c, top)
	}
	if err != nil {
		return nil, "", err
	}
	m, notes := deployManifests{}, ""
	for _, name := range slices.Sorted(maps.Keys(out)) {
		if strings.HasSuffix(name, "/NOTES.txt") {
			notes = out[name]
			continue
		}
		m.add(t, name, []byte(out[name]))
	}
	return m, notes, nil
}

func TestHelmChartRendersWhatServeRunsForEachValueSet(t *testing.T) {
	for _, c := range []struct {
		name, release, namespace, values string
		want                             deployLayout
		istio, rbac, crds                bool
		// fileCredentials: gateway.credentialsFromSecrets false (no
		// secrets right, --gateway-credentials files).
		fileCredentials bool
		providers       []string // rollouts.trafficProviders
		// check looks at what only this case sets.
		check func(t *testing.T, cfg app.Config, m deployManifests, notes string)
	}{
		{
			name: "defaults", release: "meshlens", namespace: deployNamespace,
			want: deployLayout{namespace: deployNamespace, name: "meshlens", meshConfig: "meshlens-mesh-config",
				clickhouse: "meshlens-clickhouse", tokensSecret: "meshlens-tokens", replicas: 3, persistent: true},
			istio: true, rbac: true, crds: true,
			check: func(t *testing.T, cfg app.Config, m deployManifests, notes string) {
				if cfg.DomainSuffix != "cluster.local" || cfg.Kubeconfig != "" {
					t.Errorf("--domain-suffix %q --kubeconfig %q, want cluster.local and the in-cluster default", cfg.DomainSuffix, cfg.Kubeconfig)
				}
				for _, want := range []string{"port-forward svc/meshlens 8080", "get secret meshlens-tokens", "{.data.tokens}", "kubectl get rollouts.meshlens.io"} {
					if !strings.Contains(notes, want) {
						t.Errorf("NOTES.txt does not say %q:\n%s", want, notes)
					}
				}
				if _, ok := m["ServiceMonitor/meshlens"]; ok {
					t.Error("a ServiceMonitor by default: it needs the Prometheus Operator's CRD")
				}
			},
		},
		{
			name: "a ServiceMonitor", release: "meshlens", namespace: deployNamespace,
			values: "metrics: {serviceMonitor: {enabled: true, interval: 30s, labels: {release: prom}}}\ntokens: {viewer: 0123456789abcdef-viewer}",
			want: deployLayout{namespace: deployNamespace, name: "meshlens", meshConfig: "meshlens-mesh-config",
				clickhouse: "meshlens-clickhouse", tokensSecret: "meshlens-tokens", replicas: 3, persistent: true},
			istio: true, rbac: true, crds: true,
			check: func(t *testing.T, _ app.Config, m deployManifests, _ string) {
				sts := m.get(t, "StatefulSet/meshlens")
				sm := m.get(t, "ServiceMonitor/meshlens")
				// /metrics/istio needs a token off loopback: the viewer's,
				// alone under its own key of the tokens Secret.
				tok, _ := base64.StdEncoding.DecodeString(fmt.Sprint(dig(m.get(t, "Secret/meshlens-tokens"), "data", "viewer-token")))
				if string(tok) != "0123456789abcdef-viewer" {
					t.Errorf("the tokens Secret's viewer-token is %q, want the viewer token", tok)
				}
				if got := dig(sm, "metadata", "labels", "release"); got != "prom" {
					t.Errorf("ServiceMonitor label release=%v, want the values' prom", got)
				}
				var paths []string
				for _, e := range yamlList(dig(sm, "spec", "endpoints")) {
					if e["port"] != "http" || e["interval"] != "30s" ||
						fmt.Sprint(dig(e, "authorization", "credentials")) != "map[key:viewer-token name:meshlens-tokens]" {
						t.Errorf("endpoint %v, want port http every 30s with the viewer token", e)
					}
					paths = append(paths, fmt.Sprint(e["path"]))
				}
				if fmt.Sprint(paths) != "[/metrics /metrics/istio]" {
					t.Errorf("ServiceMonitor scrapes %v, want meshlens' own and Istio's metrics", paths)
				}
				// Each replica once: exactly one Service matches, and it
				// selects the StatefulSet's pods on a port named http.
				want, _ := dig(sm, "spec", "selector", "matchLabels").(map[string]any)
				podLabels, _ := dig(sts, "spec", "template", "metadata", "labels").(map[string]any)
				var matched []string
				for _, key := range deployKeys(m) {
					if !strings.HasPrefix(key, "Service/") {
						continue
					}
					labels, _ := dig(m[key], "metadata", "labels").(map[string]any)
					if subsetOf(want, labels) {
						matched = append(matched, key)
						sel, _ := dig(m[key], "spec", "selector").(map[string]any)
						if !subsetOf(sel, podLabels) {
							t.Errorf("%s selects %v, not the meshlens pods (%v)", key, sel, podLabels)
						}
					}
				}
				if len(matched) != 1 {
					t.Errorf("the ServiceMonitor matches Services %v, want exactly one (each replica scraped once)", matched)
				}
			},
		},
		{
			name: "istio off", release: "meshlens", namespace: deployNamespace, values: "istio: {enabled: false}",
			want: deployLayout{namespace: deployNamespace, name: "meshlens", meshConfig: "meshlens-mesh-config",
				clickhouse: "meshlens-clickhouse", tokensSecret: "meshlens-tokens", replicas: 3, persistent: true},
			istio: false, rbac: true, crds: true,
		},
		{
			name: "the istio and gatewayAPI traffic providers", release: "meshlens", namespace: deployNamespace,
			values: "rollouts: {trafficProviders: [istio, gatewayAPI]}",
			want: deployLayout{namespace: deployNamespace, name: "meshlens", meshConfig: "meshlens-mesh-config",
				clickhouse: "meshlens-clickhouse", tokensSecret: "meshlens-tokens", replicas: 3, persistent: true},
			istio: true, rbac: true, crds: true, providers: []string{"istio", "gatewayAPI"},
		},
		{
			name: "gateway certificates as files", release: "meshlens", namespace: deployNamespace,
			values: "gateway: {credentialsFromSecrets: false}",
			want: deployLayout{namespace: deployNamespace, name: "meshlens", meshConfig: "meshlens-mesh-config",
				clickhouse: "meshlens-clickhouse", tokensSecret: "meshlens-tokens", replicas: 3, persistent: true},
			istio: true, rbac: true, crds: true, fileCredentials: true,
		},
		{
			name: "three replicas answer as one", release: "meshlens", namespace: deployNamespace, values: "replicaCount: 3",
			want: deployLayout{namespace: deployNamespace, name: "meshlens", meshConfig: "meshlens-mesh-config",
				clickhouse: "meshlens-clickhouse", tokensSecret: "meshlens-tokens", replicas: 3, persistent: true},
			istio: true, rbac: true, crds: true,
			check: func(t *testing.T, cfg app.Config, m deployManifests, notes string) {
				if !strings.Contains(notes, "3 replicas answer as one") {
					t.Errorf("NOTES.txt does not say how the replicas work:\n%s", notes)
				}
				r := cfg.Replicas
				if r.PeersService != deployNamespace+"/meshlens-peers" || !r.LeaderElect || r.Lease != deployNamespace+"/meshlens" ||
					r.LeaseDur != 15*time.Second || r.PeerTimeout != time.Second || r.Advertise != "$(POD_IP):8080" {
					t.Errorf("replica settings %+v: want peers from meshlens-peers, the Lease meshlens, advertising the pod IP", r)
				}
				// The peers are the headless Service's endpoints, port http,
				// which also governs the StatefulSet.
				peers := m.get(t, "Service/meshlens-peers")
				if dig(peers, "spec", "clusterIP") != "None" || dig(peers, "spec", "publishNotReadyAddresses") != false {
					t.Errorf("Service/meshlens-peers is not headless with ready endpoints only: %v", dig(peers, "spec"))
				}
				if ports, _ := dig(peers, "spec", "ports").([]any); len(ports) != 1 || dig(ports[0].(map[string]any), "name") != "http" {
					t.Errorf("Service/meshlens-peers ports %v, want the one named http", dig(peers, "spec", "ports"))
				}
				sts := m.get(t, "StatefulSet/meshlens")
				if dig(sts, "spec", "serviceName") != "meshlens-peers" {
					t.Errorf("StatefulSet serviceName %v, want the headless meshlens-peers", dig(sts, "spec", "serviceName"))
				}
				c := podContainer(t, sts, "meshlens")
				if env, _ := c["env"].([]any); len(env) == 0 || dig(env[0].(map[string]any), "valueFrom", "fieldRef", "fieldPath") != "status.podIP" {
					t.Errorf("the container has no POD_IP from status.podIP for --advertise: %v", c["env"])
				}
				pdb := m.get(t, "PodDisruptionBudget/meshlens")
				if n, _ := yamlInt(dig(pdb, "spec", "maxUnavailable")); n != 1 ||
					!reflect.DeepEqual(dig(pdb, "spec", "selector", "matchLabels"), dig(sts, "spec", "selector", "matchLabels")) {
					t.Errorf("PodDisruptionBudget %v: want maxUnavailable 1 over the StatefulSet's pods", dig(pdb, "spec"))
				}
			},
		},
		{
			name: "an existing tokens Secret", release: "meshlens", namespace: deployNamespace,
			values: "tokens: {existingSecret: api-tokens, key: tokens.txt}",
			want: deployLayout{namespace: deployNamespace, name: "meshlens", meshConfig: "meshlens-mesh-config",
				clickhouse: "meshlens-clickhouse", tokensSecret: "api-tokens", replicas: 3, persistent: true},
			istio: true, rbac: true, crds: true,
			check: func(t *testing.T, _ app.Config, m deployManifests, notes string) {
				for key := range m {
					if strings.HasPrefix(key, "Secret/") {
						t.Errorf("the chart renders %s, though the tokens Secret is the user's", key)
					}
				}
				if !strings.Contains(notes, `get secret api-tokens`) || !strings.Contains(notes, `{.data.tokens\.txt}`) {
					t.Errorf("NOTES.txt does not read the user's Secret api-tokens, key tokens.txt:\n%s", notes)
				}
			},
		},
		{
			name: "an external ClickHouse", release: "meshlens", namespace: deployNamespace,
			values: "clickhouse: {enabled: false, dsn: 'clickhouse://ch.analytics.svc:9000/meshlens'}",
			want: deployLayout{namespace: deployNamespace, name: "meshlens", meshConfig: "meshlens-mesh-config",
				clickhouseDSN: "clickhouse://ch.analytics.svc:9000/meshlens", tokensSecret: "meshlens-tokens", replicas: 3, persistent: true},
			istio: true, rbac: true, crds: true,
		},
		{
			name: "another release, namespace, ports and settings", release: "obs", namespace: "observability",
			values: `
service: {ports: {http: 9090, xds: 15012}}
clusterDomain: corp.example
config: {prometheus: "http://prometheus.istio-system:9090", clickhouse-wait: 2m}
startupProbe: {periodSeconds: 5, failureThreshold: 40}
extraArgs: [--log-level, debug]
tokens: {operator: 0123456789abcdef-operator, viewer: 0123456789abcdef-viewer}
`,
			want: deployLayout{namespace: "observability", name: "obs-meshlens", meshConfig: "obs-meshlens-mesh-config",
				clickhouse: "obs-meshlens-clickhouse", tokensSecret: "obs-meshlens-tokens", replicas: 3, persistent: true},
			istio: true, rbac: true, crds: true,
			check: func(t *testing.T, cfg app.Config, m deployManifests, notes string) {
				if cfg.DomainSuffix != "corp.example" || cfg.Prometheus != "http://prometheus.istio-system:9090" ||
					cfg.ClickHouseWait != 2*time.Minute || cfg.LogLevel != "debug" || cfg.HTTP != "0.0.0.0:9090" || cfg.XDS != "0.0.0.0:15012" {
					t.Errorf("serve config %+v does not have the values' settings", cfg)
				}
				if !strings.Contains(notes, "port-forward svc/obs-meshlens 9090") {
					t.Errorf("NOTES.txt does not forward obs-meshlens 9090:\n%s", notes)
				}
			},
		},
		{
			name: "no tokens Secret, persistence, RBAC nor CRDs", release: "meshlens", namespace: deployNamespace,
			values: `
replicaCount: 1
replicas: {leaderElect: false}
tokens: {create: false}
persistence: {enabled: false}
rbac: {create: false}
serviceAccount: {create: false, name: meshlens-managed}
crds: {install: false}
`,
			want: deployLayout{namespace: deployNamespace, name: "meshlens", meshConfig: "meshlens-mesh-config",
				clickhouse: "meshlens-clickhouse", replicas: 1, persistent: false},
			istio: true, rbac: false, crds: false,
			check: func(t *testing.T, _ app.Config, m deployManifests, notes string) {
				if sa := dig(m.get(t, "StatefulSet/meshlens"), "spec", "template", "spec", "serviceAccountName"); sa != "meshlens-managed" {
					t.Errorf("serviceAccountName %v, want meshlens-managed", sa)
				}
				if _, ok := m["ServiceAccount/meshlens-managed"]; ok {
					t.Error("serviceAccount.create is false, yet the chart renders it")
				}
				if !strings.Contains(notes, "operator.token") {
					t.Errorf("NOTES.txt does not say where the generated token is:\n%s", notes)
				}
			},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, notes, err := renderChart(t, c.release, c.namespace, c.values, nil, false)
			if err != nil {
				t.Fatalf("render: %v", err)
			}
			cfg := checkServeDeployment(t, m, c.want)
			checkDeployObjectsDecode(t, m)
			if want := map[bool]string{false: app.GatewayCredentialsAuto, true: app.GatewayCredentialsFiles}[c.fileCredentials]; cfg.GatewayCredentials != want {
				t.Errorf("--gateway-credentials %q, want %q", cfg.GatewayCredentials, want)
			}
			// helm template knows no Gateway API: no GatewayClass, which
			// would fail to install on a cluster without its CRDs.
			if _, ok := m["GatewayClass/meshlens"]; ok {
				t.Error("the chart renders a GatewayClass without the Gateway API in the cluster's API versions")
			}
			if c.rbac {
				checkDeployRBAC(t, m, c.namespace, c.want.name, c.istio, !c.fileCredentials, c.providers...)
			} else {
				for _, kind := range []string{"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"} {
					if _, ok := m[kind+"/"+c.want.name]; ok {
						t.Errorf("rbac.create is false, yet the chart renders %s/%s", kind, c.want.name)
					}
				}
			}
			checkChartCRDs(t, m, c.crds)
			if c.check != nil {
				c.check(t, cfg, m, notes)
			}
		})
	}
}

// checkChartCRDs: the rendered CRDs are deploy/crds' own, kept on uninstall.
func checkChartCRDs(t *testing.T, m deployManifests, install bool) {
	t.Helper()
	files := loadManifests(t, "deploy/crds/rollouts.meshlens.io.yaml", "deploy/crds/alertrules.meshlens.io.yaml")
	for key, want := range files {
		got, ok := m[key]
		if !install {
			if ok {
				t.Errorf("crds.install is false, yet the chart renders %s", key)
			}
			continue
		}
		if !ok {
			t.Errorf("the chart does not render %s", key)
			continue
		}
		annotations, _ := dig(got, "metadata", "annotations").(map[string]any)
		if annotations["helm.sh/resource-policy"] != "keep" {
			t.Errorf("%s is not annotated helm.sh/resource-policy: keep; uninstalling would delete every Rollout and AlertRule", key)
		}
		got = deepCopyJSON(got)
		delete(dig(got, "metadata").(map[string]any), "annotations")
		if !reflect.DeepEqual(got, want) {
			t.Errorf("the chart's %s differs from deploy/crds' after templating", key)
		}
	}
}

func deepCopyJSON(m map[string]any) map[string]any {
	b, err := yaml.Marshal(m)
	if err != nil {
		panic(err)
	}
	var out map[string]any
	if err := yaml.Unmarshal(b, &out); err != nil {
		panic(err)
	}
	return out
}

// TestHelmChartPassesHelmLint runs `helm lint`'s rules (Chart.yaml,
// values, templates, CRDs) for a few value sets; warnings fail too.
func TestHelmChartPassesHelmLint(t *testing.T) {
	for _, values := range []string{
		"",
		"istio: {enabled: false}\nreplicaCount: 3\nclickhouse: {enabled: false, dsn: 'clickhouse://ch:9000/meshlens'}",
		"tokens: {create: false}\npersistence: {enabled: false}\nrbac: {create: false}\ncrds: {install: false}",
	} {
		var vals map[string]any
		if err := yaml.Unmarshal([]byte(values), &vals); err != nil {
			t.Fatal(err)
		}
		res := lint.RunAll(filepath.Join(repoRoot(t), chartDir), vals, deployNamespace)
		for _, msg := range res.Messages {
			if msg.Severity >= support.WarningSev {
				t.Errorf("helm lint with values %q: %s", values, msg)
			}
		}
	}
}

func TestHelmChartRefusesValuesThatCannotWork(t *testing.T) {
	for _, c := range []struct {
		name, values, want string
	}{
		{"a misspelt key (values.schema.json)", "replicaCont: 3", "replicaCont"},
		{"replicas without leader election", "replicaCount: 3\nreplicas: {leaderElect: false}", "replicaCount > 1 needs replicas.leaderElect"},
		{"a port out of range", "service: {ports: {http: 0}}", "/service/ports/http"},
		{"replicas without shared tokens", "replicaCount: 2\ntokens: {create: false}", "replicaCount > 1 needs tokens"},
		{"no ClickHouse at all", "clickhouse: {enabled: false}", "clickhouse.dsn is required"},
		{"the istio provider without Istio", "istio: {enabled: false}\nrollouts: {trafficProviders: [istio]}", "needs istio.enabled"},
		{"an unknown traffic provider", "rollouts: {trafficProviders: [linkerd]}", "trafficProviders"},
		{"a listener in config", "config: {http: '0.0.0.0:80'}", "config.http: the chart sets http itself"},
		{"the domain in config", "config: {domain-suffix: x.local}", "config.domain-suffix: the chart sets"},
		{"a short operator token", "tokens: {operator: short}", "tokens.operator must be at least 16 characters"},
		{"an operator token with an existing Secret", "tokens: {existingSecret: s, operator: 0123456789abcdef-x}", "tokens.operator is for the Secret the chart creates"},
		{"a ServiceMonitor without a token", "metrics: {serviceMonitor: {enabled: true}}", "metrics.serviceMonitor needs a viewer token"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := renderChart(t, "meshlens", deployNamespace, c.values, nil, false)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("render with %q: error %v, want one saying %q", c.values, err, c.want)
			}
		})
	}
}

// TestHelmChartInstallsOnARealAPIServerWithTheRightsMeshlensUses applies the
// rendered chart to a real kube-apiserver (kubetest; the CRDs are already
// there), so that the server's own validation judges every object; asks the
// server's RBAC authorizer what meshlens' ServiceAccount may do; and renders
// an upgrade, whose `lookup` must keep the operator token made at install.
func TestHelmChartInstallsOnARealAPIServerWithTheRightsMeshlensUses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a kube-apiserver")
	}
	cluster := kubetest.Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := cluster.Namespace(t, "helm")
	release := ns // unique, so that its ClusterRole is too
	name := release + "-meshlens"
	// The GatewayClass is cluster-scoped: a name of this test's own.
	values := "crds: {install: false}\nrollouts: {trafficProviders: [istio, gatewayAPI]}\ngateway: {gatewayClass: {name: " + release + "}}"
	m, _, err := renderChart(t, release, ns, values, cluster.Config, false)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	var all []byte // every object, for kubectl delete: the cluster is shared with other tests
	for _, key := range deployKeys(m) {
		doc, err := yaml.Marshal(m[key])
		if err != nil {
			t.Fatal(err)
		}
		all = append(append(all, "---\n"...), doc...)
	}
	manifest := filepath.Join(t.TempDir(), "chart.yaml")
	if err := os.WriteFile(manifest, all, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if out, err := cluster.Kubectl(context.Background(), "delete", "--ignore-not-found", "--wait=false", "-f", manifest); err != nil {
			t.Logf("cleanup: %v: %s", err, out)
		}
	})
	for _, key := range deployKeys(m) {
		doc, _ := yaml.Marshal(m[key])
		if err := cluster.Apply(ctx, ns, doc); err != nil {
			t.Errorf("the API server refuses %s: %v", key, err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	// The Gateway API is installed: the chart's GatewayClass names
	// meshlens' controller.
	if gc := m.get(t, "GatewayClass/"+release); dig(gc, "spec", "controllerName") != "meshlens.io/gateway-controller" {
		t.Errorf("GatewayClass/%s: controllerName %v, want meshlens.io/gateway-controller", release, dig(gc, "spec", "controllerName"))
	}

	secret, err := cluster.Client.CoreV1().Secrets(ns).Get(ctx, name+"-tokens", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	operator := func(data []byte) string {
		t.Helper()
		tokens, err := auth.ParseTokens(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("tokens Secret: %v", err)
		}
		for _, tok := range tokens {
			if tok.Role == auth.Operator {
				return tok.Value
			}
		}
		t.Fatal("tokens Secret has no operator token")
		return ""
	}
	installed := operator(secret.Data["tokens"])
	up, _, err := renderChart(t, release, ns, values, cluster.Config, true)
	if err != nil {
		t.Fatalf("render the upgrade: %v", err)
	}
	b64, _ := dig(up.get(t, "Secret/"+name+"-tokens"), "data", "tokens").(string)
	upgraded, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatalf("the upgrade's tokens Secret: %v", err)
	}
	if got := operator(upgraded); got != installed {
		t.Error("an upgrade replaces the operator token made at install: every client would be locked out")
	}

	// What the ServiceAccount may do, as the API server's RBAC authorizer
	// answers for a pod running as it.
	can := func(group, resource, subresource, verb, namespace string) bool {
		t.Helper()
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User:   "system:serviceaccount:" + ns + ":" + name,
			Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Group: group, Resource: resource, Subresource: subresource, Verb: verb, Namespace: namespace},
		}}
		res, err := cluster.Client.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("SubjectAccessReview: %v", err)
		}
		return res.Status.Allowed
	}
	for _, rule := range deployClusterRules(true, true, "istio", "gatewayAPI") {
		f := strings.Fields(rule)
		group, resource, verb := strings.TrimPrefix(f[0], "core"), f[1], f[2]
		resource, sub, _ := strings.Cut(resource, "/")
		namespace := "bookinfo"
		if resource == "namespaces" || resource == "nodes" {
			namespace = ""
		}
		if !can(group, resource, sub, verb, namespace) {
			t.Errorf("meshlens may not %s", rule)
		}
	}
	for _, rule := range deployLeaseRules {
		f := strings.Fields(rule)
		if !can(f[0], f[1], "", f[2], ns) {
			t.Errorf("meshlens may not %s in its namespace", rule)
		}
	}
	for _, denied := range []struct{ group, resource, sub, verb, namespace string }{
		{"", "secrets", "", "update", "bookinfo"},
		{"", "secrets", "", "create", "bookinfo"},
		{"", "pods", "", "delete", "bookinfo"},
		{"", "configmaps", "", "list", "bookinfo"},
		{"networking.istio.io", "virtualservices", "", "delete", "bookinfo"},
		{"networking.istio.io", "destinationrules", "", "update", "bookinfo"},
		{"gateway.networking.k8s.io", "httproutes", "", "delete", "bookinfo"},
		{"meshlens.io", "rollouts", "", "update", "bookinfo"},
		{"coordination.k8s.io", "leases", "", "update", "kube-system"},
	} {
		if can(denied.group, denied.resource, denied.sub, denied.verb, denied.namespace) {
			t.Errorf("meshlens may %s %s/%s (%s) in %q, which it does not need", denied.verb, denied.group, denied.resource, denied.sub, denied.namespace)
		}
	}
}

// subsetOf reports whether every key of sub has the same value in m.
func subsetOf(sub, m map[string]any) bool {
	for k, v := range sub {
		if m[k] != v {
			return false
		}
	}
	return len(sub) > 0
}
