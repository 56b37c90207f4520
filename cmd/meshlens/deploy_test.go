package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	"github.com/meshlens/meshlens/app"
	"github.com/meshlens/meshlens/auth"
)

// The manifests in deploy/kubernetes and the output of the Helm chart in
// deploy/helm/meshlens (helm_test.go) go through the same checks, against
// serve's own config loader: a manifest whose ConfigMap, ports, probes or
// volumes disagree with what `meshlens serve` would do with them fails here,
// not in a cluster.

const deployNamespace = "meshlens-system"

// deployManifests are Kubernetes objects, one map per YAML document, indexed
// by "Kind/name".
type deployManifests map[string]map[string]any

// add parses the YAML documents of one file, or of one rendered template.
func (m deployManifests) add(t *testing.T, source string, data []byte) {
	t.Helper()
	docs := regexp.MustCompile(`(?m)^---[ \t]*$`).Split(string(data), -1)
	for i, doc := range docs {
		var obj map[string]any
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			t.Fatalf("%s: document %d: %v", source, i, err)
		}
		if obj == nil {
			continue // only comments
		}
		kind, _ := obj["kind"].(string)
		name, _ := dig(obj, "metadata", "name").(string)
		if kind == "" || name == "" || obj["apiVersion"] == nil {
			t.Fatalf("%s: document %d has no apiVersion, kind or metadata.name", source, i)
		}
		key := kind + "/" + name
		if _, dup := m[key]; dup {
			t.Fatalf("%s: %s defined twice", source, key)
		}
		m[key] = obj
	}
}

// loadManifests reads files of the repository.
func loadManifests(t *testing.T, files ...string) deployManifests {
	t.Helper()
	m := deployManifests{}
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(repoRoot(t), f))
		if err != nil {
			t.Fatal(err)
		}
		m.add(t, f, data)
	}
	return m
}

func (m deployManifests) get(t *testing.T, key string) map[string]any {
	t.Helper()
	obj, ok := m[key]
	if !ok {
		t.Fatalf("the manifests have no %s; they have %v", key, deployKeys(m))
	}
	return obj
}

// field walks nested maps; it returns nil when a step is missing.
func dig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func yamlList(v any) []map[string]any {
	items, _ := v.([]any)
	out := make([]map[string]any, 0, len(items))
	for _, it := range items {
		if m, ok := it.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

// number reads a YAML integer (sigs.k8s.io/yaml decodes it as float64).
func yamlInt(v any) (int, bool) {
	f, ok := v.(float64)
	if !ok || f != float64(int(f)) {
		return 0, false
	}
	return int(f), true
}

func podContainer(t *testing.T, sts map[string]any, name string) map[string]any {
	t.Helper()
	for _, c := range yamlList(dig(sts, "spec", "template", "spec", "containers")) {
		if c["name"] == name {
			return c
		}
	}
	t.Fatalf("StatefulSet %v has no container %q", dig(sts, "metadata", "name"), name)
	return nil
}

// containerPorts maps port name → number.
func podContainerPorts(t *testing.T, c map[string]any) map[string]int {
	t.Helper()
	ports := map[string]int{}
	for _, p := range yamlList(c["ports"]) {
		n, ok := yamlInt(p["containerPort"])
		name, _ := p["name"].(string)
		if !ok || name == "" {
			t.Fatalf("container %v: port %v needs a name and a numeric containerPort", c["name"], p)
		}
		ports[name] = n
	}
	return ports
}

// servicePorts maps the Service's port names to [port, resolved target port].
func deployServicePorts(t *testing.T, svc map[string]any, container map[string]int) map[string][2]int {
	t.Helper()
	out := map[string][2]int{}
	for _, p := range yamlList(dig(svc, "spec", "ports")) {
		name, _ := p["name"].(string)
		port, ok := yamlInt(p["port"])
		if name == "" || !ok {
			t.Fatalf("Service %v: port %v needs a name and a numeric port", dig(svc, "metadata", "name"), p)
		}
		target := port
		switch tp := p["targetPort"].(type) {
		case nil:
		case string:
			n, ok := container[tp]
			if !ok {
				t.Fatalf("Service %v port %s: targetPort %q names no container port (container ports: %v)", dig(svc, "metadata", "name"), name, tp, container)
			}
			target = n
		default:
			n, ok := yamlInt(tp)
			if !ok {
				t.Fatalf("Service %v port %s: targetPort %v", dig(svc, "metadata", "name"), name, tp)
			}
			target = n
		}
		out[name] = [2]int{port, target}
	}
	return out
}

// deployLayout is where a set of manifests puts meshlens: the names the
// checks look for, and what the deployment was asked to be.
type deployLayout struct {
	namespace string
	// name of meshlens' StatefulSet, Service and ConfigMap (the --config file).
	name string
	// meshConfig is the ConfigMap mounted as --config-dir.
	meshConfig string
	// clickhouse names the StatefulSet and Service of the bundled ClickHouse
	// that --clickhouse must point at; "" when it is external, and then
	// --clickhouse must be clickhouseDSN.
	clickhouse, clickhouseDSN string
	// tokensSecret is the Secret mounted as --tokens; "" when meshlens
	// makes its own operator token in its data dir.
	tokensSecret string
	replicas     int
	// persistent: the data dir is a volumeClaimTemplate; else an emptyDir.
	persistent bool
}

// clusterScoped are the kinds of deploy/ that have no namespace.
var clusterScoped = map[string]bool{"Namespace": true, "ClusterRole": true, "ClusterRoleBinding": true, "CustomResourceDefinition": true, "GatewayClass": true}

func TestDeployManifestConfigLoadsWithServeAndMatchesPortsProbesAndVolumes(t *testing.T) {
	m := loadManifests(t, "deploy/kubernetes/meshlens.yaml", "deploy/kubernetes/rbac.yaml")
	m.get(t, "Namespace/"+deployNamespace)
	checkServeDeployment(t, m, deployLayout{
		namespace: deployNamespace, name: "meshlens", meshConfig: "meshlens-mesh-config",
		clickhouse: "clickhouse", replicas: 1, persistent: true,
	})
	checkDeployRBAC(t, m, deployNamespace, "meshlens", true, true)
	checkDeployObjectsDecode(t, m)
}

// checkServeDeployment checks meshlens' StatefulSet, its ConfigMap and Service
// against what `meshlens serve` does with the container's arguments and
// config file, and returns that config.
func checkServeDeployment(t *testing.T, m deployManifests, want deployLayout) app.Config {
	t.Helper()
	cm := m.get(t, "ConfigMap/"+want.name)
	sts := m.get(t, "StatefulSet/"+want.name)
	svc := m.get(t, "Service/"+want.name)
	c := podContainer(t, sts, "meshlens")

	for key, obj := range m {
		if clusterScoped[fmt.Sprint(obj["kind"])] {
			continue
		}
		if ns := dig(obj, "metadata", "namespace"); ns != want.namespace {
			t.Errorf("%s: namespace %v, want %s", key, ns, want.namespace)
		}
	}
	if n, _ := yamlInt(dig(sts, "spec", "replicas")); n != want.replicas {
		t.Errorf("StatefulSet %s has %v replicas, want %d", want.name, dig(sts, "spec", "replicas"), want.replicas)
	}
	if sa, _ := dig(sts, "spec", "template", "spec", "serviceAccountName").(string); sa == "" {
		t.Errorf("StatefulSet %s names no serviceAccountName: meshlens would read the cluster as the namespace's default account", want.name)
	}

	// The container runs `meshlens serve --config <file from the ConfigMap>`:
	// run the same arguments through serve's loader, with the file written
	// where the test can read it.
	content, ok := dig(cm, "data", "meshlens.yaml").(string)
	if !ok {
		t.Fatalf("ConfigMap %s has no data[meshlens.yaml]", want.name)
	}
	var args []string
	for _, a := range c["args"].([]any) {
		args = append(args, fmt.Sprint(a))
	}
	if len(args) == 0 || args[0] != "serve" {
		t.Fatalf("container args %q: want serve ...", args)
	}
	args = append([]string(nil), args[1:]...)
	cfgPath := ""
	for i, a := range args {
		if a == "--config" && i+1 < len(args) {
			cfgPath = args[i+1]
			args[i+1] = filepath.Join(t.TempDir(), "meshlens.yaml")
			if err := os.WriteFile(args[i+1], []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	if cfgPath == "" {
		t.Fatalf("container args %q have no --config FILE", c["args"])
	}
	cfg, err := app.LoadConfig(args, io.Discard)
	if err != nil {
		t.Fatalf("meshlens serve %q with the ConfigMap's meshlens.yaml:\n%s\nfails: %v", args, content, err)
	}

	// Every listener must be reachable from the Service (not loopback), and
	// the ports serve listens on, the container declares and the Service
	// exposes must be the same set. The port name's prefix is Istio's
	// protocol selection, so it must say what the listener speaks.
	listeners := []struct {
		flag, addr, protocol string
	}{
		{"http", cfg.HTTP, "http"},
		{"otlp-grpc", cfg.Collector.OTLPGRPC, "grpc"},
		{"otlp-http", cfg.Collector.OTLPHTTP, "http"},
		{"als", cfg.Collector.ALS, "grpc"},
		{"xds", cfg.XDS, "grpc"},
	}
	cports := podContainerPorts(t, c)
	sports := deployServicePorts(t, svc, cports)
	byNumber := map[int]string{} // container port number → name
	for name, n := range cports {
		byNumber[n] = name
	}
	listening := map[int]bool{}
	for _, l := range listeners {
		if l.addr == "" {
			t.Errorf("--%s is empty (disabled) in the ConfigMap", l.flag)
			continue
		}
		host, p, err := net.SplitHostPort(l.addr)
		if err != nil {
			t.Fatalf("--%s %q: %v", l.flag, l.addr, err)
		}
		if host != "" && host != "0.0.0.0" && host != "::" {
			t.Errorf("--%s listens on %s: the Service cannot reach it, want 0.0.0.0", l.flag, l.addr)
		}
		port, _ := strconv.Atoi(p)
		listening[port] = true
		name, ok := byNumber[port]
		if !ok {
			t.Errorf("--%s listens on port %d, which the container does not declare (container ports: %v)", l.flag, port, cports)
			continue
		}
		if name != l.protocol && !strings.HasPrefix(name, l.protocol+"-") {
			t.Errorf("container port %d (--%s) is named %q: Istio would not treat it as %s; want %s or %s-*", port, l.flag, name, l.protocol, l.protocol, l.protocol)
		}
		sp, ok := sports[name]
		if !ok {
			t.Errorf("--%s: container port %s (%d) is not in Service %s (service ports: %v)", l.flag, name, port, want.name, sports)
		} else if sp != [2]int{port, port} {
			t.Errorf("--%s: Service port %s is %d → %d, want %d → %d (clients are configured with serve's port)", l.flag, name, sp[0], sp[1], port, port)
		}
	}
	for name, n := range cports {
		if !listening[n] {
			t.Errorf("container declares port %s (%d), but serve listens on none such with this config", name, n)
		}
		if _, ok := sports[name]; !ok {
			t.Errorf("container port %s (%d) is not in Service %s", name, n, want.name)
		}
	}
	for name, sp := range sports {
		if !listening[sp[1]] {
			t.Errorf("Service port %s targets %d, where serve does not listen", name, sp[1])
		}
	}
	sel, _ := dig(svc, "spec", "selector").(map[string]any)
	labels, _ := dig(sts, "spec", "template", "metadata", "labels").(map[string]any)
	if len(sel) == 0 {
		t.Errorf("Service %s has no selector", want.name)
	}
	for k, v := range sel {
		if labels[k] != v {
			t.Errorf("Service %s selects %s=%v, the pod is labelled %v", want.name, k, v, labels)
		}
	}

	// Probes: the HTTP endpoints serve mounts, on the port of --http.
	_, httpPort, _ := net.SplitHostPort(cfg.HTTP)
	for _, p := range []struct{ probe, path string }{
		{"readinessProbe", "/readyz"},
		{"livenessProbe", "/healthz"},
		{"startupProbe", "/healthz"},
	} {
		get := dig(c, p.probe, "httpGet")
		if got := dig(get, "path"); got != p.path {
			t.Errorf("%s path %v, want %s", p.probe, got, p.path)
		}
		port := dig(get, "port")
		if name, ok := port.(string); ok {
			n, ok := cports[name]
			if !ok {
				t.Errorf("%s port %q names no container port", p.probe, name)
			}
			port = float64(n)
		}
		if n, _ := yamlInt(port); strconv.Itoa(n) != httpPort {
			t.Errorf("%s probes port %v, --http listens on %s", p.probe, dig(get, "port"), httpPort)
		}
	}

	// serve waits up to --clickhouse-wait (plus one connection attempt of
	// 10s) before it listens at all; a liveness probe that starts sooner
	// restarts meshlens forever while ClickHouse is down.
	period, _ := yamlInt(dig(c, "startupProbe", "periodSeconds"))
	failures, _ := yamlInt(dig(c, "startupProbe", "failureThreshold"))
	if budget := time.Duration(period*failures) * time.Second; budget < cfg.ClickHouseWait+30*time.Second {
		t.Errorf("startupProbe allows %v (periodSeconds %d × failureThreshold %d) before liveness applies; serve may take --clickhouse-wait %v + 10s to listen, want at least %v",
			budget, period, failures, cfg.ClickHouseWait, cfg.ClickHouseWait+30*time.Second)
	}

	// Volumes: the data dir on a claim of its own, the config file and the
	// GitOps directory from their ConfigMaps, the tokens from their Secret.
	mounts := map[string]map[string]any{} // mountPath → mount
	for _, vm := range yamlList(c["volumeMounts"]) {
		mounts[fmt.Sprint(vm["mountPath"])] = vm
	}
	volumes := map[string]map[string]any{}
	for _, v := range yamlList(dig(sts, "spec", "template", "spec", "volumes")) {
		volumes[fmt.Sprint(v["name"])] = v
	}
	claims := map[string]bool{}
	for _, pvc := range yamlList(dig(sts, "spec", "volumeClaimTemplates")) {
		claims[fmt.Sprint(dig(pvc, "metadata", "name"))] = true
	}
	data, ok := mounts[cfg.DataDir]
	switch {
	case !ok:
		t.Errorf("no volume is mounted at --data-dir %s (mounts: %v)", cfg.DataDir, deployKeys(mounts))
	case want.persistent && !claims[fmt.Sprint(data["name"])]:
		t.Errorf("--data-dir %s is volume %v, not one of the volumeClaimTemplates %v: the queue and accepted config would not survive a restart", cfg.DataDir, data["name"], claims)
	case !want.persistent && dig(volumes[fmt.Sprint(data["name"])], "emptyDir") == nil:
		t.Errorf("--data-dir %s is volume %v, want an emptyDir (persistence off); volumes %v", cfg.DataDir, data["name"], deployKeys(volumes))
	}
	if data != nil && data["readOnly"] == true {
		t.Errorf("--data-dir %s is mounted read-only", cfg.DataDir)
	}
	if dig(c, "securityContext", "readOnlyRootFilesystem") != true {
		t.Error("container securityContext.readOnlyRootFilesystem is not true")
	}
	if dig(sts, "spec", "template", "spec", "securityContext", "runAsNonRoot") != true &&
		dig(c, "securityContext", "runAsNonRoot") != true {
		t.Error("neither pod nor container securityContext sets runAsNonRoot")
	}
	for _, mount := range []struct{ path, configMap, subPath string }{
		{cfgPath, want.name, "meshlens.yaml"},
		{cfg.ConfigDir, want.meshConfig, ""},
	} {
		vm, ok := mounts[mount.path]
		if !ok {
			t.Errorf("nothing is mounted at %s (mounts: %v)", mount.path, deployKeys(mounts))
			continue
		}
		if got := fmt.Sprint(dig(volumes[fmt.Sprint(vm["name"])], "configMap", "name")); got != mount.configMap {
			t.Errorf("%s is mounted from ConfigMap %q, want %q", mount.path, got, mount.configMap)
		}
		if got, _ := vm["subPath"].(string); got != mount.subPath {
			t.Errorf("%s subPath %q, want %q", mount.path, got, mount.subPath)
		}
		m.get(t, "ConfigMap/"+mount.configMap)
	}
	checkDeployTokens(t, m, cfg, mounts, volumes, want)

	// --clickhouse names the bundled ClickHouse's Service, or the DSN given.
	if want.clickhouse == "" {
		if cfg.ClickHouse != want.clickhouseDSN {
			t.Errorf("--clickhouse %q, want %q", cfg.ClickHouse, want.clickhouseDSN)
		}
		for key := range m {
			if strings.Contains(key, "clickhouse") {
				t.Errorf("ClickHouse is external, yet the manifests have %s", key)
			}
		}
		return cfg
	}
	u, err := url.Parse(cfg.ClickHouse)
	if err != nil {
		t.Fatalf("--clickhouse %q: %v", cfg.ClickHouse, err)
	}
	if want := want.clickhouse + "." + want.namespace + ".svc"; u.Hostname() != want {
		t.Errorf("--clickhouse host %q, want the Service %s", u.Hostname(), want)
	}
	ch := m.get(t, "StatefulSet/"+want.clickhouse)
	chPorts := deployServicePorts(t, m.get(t, "Service/"+want.clickhouse), podContainerPorts(t, podContainer(t, ch, "clickhouse")))
	native := false
	for _, sp := range chPorts {
		native = native || strconv.Itoa(sp[0]) == u.Port() && sp[1] == 9000
	}
	if !native {
		t.Errorf("--clickhouse port %s is not a Service %s port reaching the native port 9000 (ports: %v)", u.Port(), want.clickhouse, chPorts)
	}
	if db := strings.Trim(u.Path, "/"); db != "meshlens" {
		t.Errorf("--clickhouse database %q; deploy/grafana's datasource defaults to meshlens", db)
	}
	return cfg
}

// checkDeployTokens checks that --tokens is the file of the tokens Secret,
// mounted read-only, and that a Secret of the manifests parses as serve
// parses it, with an operator token.
func checkDeployTokens(t *testing.T, m deployManifests, cfg app.Config, mounts, volumes map[string]map[string]any, want deployLayout) {
	t.Helper()
	if want.tokensSecret == "" {
		if cfg.Tokens != "" {
			t.Errorf("--tokens %s, but no tokens Secret is wanted", cfg.Tokens)
		}
		return
	}
	if cfg.Tokens == "" {
		t.Errorf("--tokens is not set: meshlens would make its own operator token instead of reading Secret %s", want.tokensSecret)
		return
	}
	dir, file := path.Split(cfg.Tokens)
	vm, ok := mounts[path.Clean(dir)]
	if !ok {
		t.Errorf("--tokens %s: nothing is mounted at %s (mounts: %v)", cfg.Tokens, path.Clean(dir), deployKeys(mounts))
		return
	}
	if vm["readOnly"] != true {
		t.Errorf("the tokens are mounted writable at %s", path.Clean(dir))
	}
	vol := volumes[fmt.Sprint(vm["name"])]
	if got := dig(vol, "secret", "secretName"); got != want.tokensSecret {
		t.Errorf("%s is mounted from Secret %v, want %s", path.Clean(dir), got, want.tokensSecret)
	}
	key := file
	if items := yamlList(dig(vol, "secret", "items")); len(items) > 0 {
		key = ""
		for _, it := range items {
			if it["path"] == file {
				key = fmt.Sprint(it["key"])
			}
		}
		if key == "" {
			t.Errorf("--tokens %s: the Secret volume's items %v give no file %s", cfg.Tokens, items, file)
			return
		}
	}
	secret, ok := m["Secret/"+want.tokensSecret]
	if !ok {
		return // a Secret the user manages
	}
	b64, _ := dig(secret, "data", key).(string)
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || b64 == "" {
		t.Fatalf("Secret %s has no base64 data[%s] (%v)", want.tokensSecret, key, err)
	}
	tokens, err := auth.ParseTokens(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("Secret %s data[%s], as `meshlens serve --tokens` reads it: %v", want.tokensSecret, key, err)
	}
	if !slices.ContainsFunc(tokens, func(tok auth.Token) bool { return tok.Role == auth.Operator }) {
		t.Errorf("Secret %s holds no operator token: nobody could apply config", want.tokensSecret)
	}
}

// deployClusterRules are the rights meshlens uses cluster-wide, one
// "group resource verb" each; istio adds Istio's kinds, secrets the reads
// of Gateway credentials (--gateway-credentials auto), and providers the
// writes of Rollouts' traffic providers (istio, gatewayAPI).
func deployClusterRules(istio, secrets bool, providers ...string) []string {
	var rules []string
	add := func(group string, resources []string, verbs ...string) {
		for _, r := range resources {
			for _, v := range verbs {
				rules = append(rules, group+" "+r+" "+v)
			}
		}
	}
	add("core", []string{"namespaces", "services", "pods", "nodes"}, "get", "list", "watch")
	add("discovery.k8s.io", []string{"endpointslices"}, "get", "list", "watch")
	if secrets {
		add("core", []string{"secrets"}, "get", "list", "watch")
	}
	add("gateway.networking.k8s.io", []string{"gatewayclasses", "gateways", "httproutes", "grpcroutes", "referencegrants"}, "get", "list", "watch")
	add("gateway.networking.k8s.io", []string{"gatewayclasses/status", "gateways/status", "httproutes/status", "grpcroutes/status"}, "patch")
	if istio {
		for group, kinds := range map[string][]string{
			"networking.istio.io": {"virtualservices", "destinationrules", "serviceentries", "workloadentries", "workloadgroups", "gateways", "sidecars"},
			"security.istio.io":   {"peerauthentications", "requestauthentications", "authorizationpolicies"},
			"telemetry.istio.io":  {"telemetries"},
		} {
			add(group, kinds, "get", "list", "watch")
			for _, k := range kinds {
				add(group, []string{k + "/status"}, "patch")
			}
		}
	}
	if slices.Contains(providers, "istio") {
		add("networking.istio.io", []string{"virtualservices"}, "update")
		add("networking.istio.io", []string{"destinationrules"}, "create")
	}
	if slices.Contains(providers, "gatewayAPI") {
		add("gateway.networking.k8s.io", []string{"httproutes"}, "update") // get, list, watch: the config source's
	}
	add("meshlens.io", []string{"rollouts", "alertrules"}, "get", "list", "watch")
	add("meshlens.io", []string{"rollouts/status", "alertrules/status"}, "patch")
	add("core", []string{"events"}, "create", "patch")
	sort.Strings(rules)
	return rules
}

// deployLeaseRules are the rights of the Role in meshlens' own namespace.
var deployLeaseRules = []string{"coordination.k8s.io leases create", "coordination.k8s.io leases get", "coordination.k8s.io leases update"}

// roleRules flattens a Role's or ClusterRole's rules to "group resource verb",
// the core group ("") written core.
func roleRules(t *testing.T, key string, role map[string]any) []string {
	t.Helper()
	var out []string
	for _, r := range yamlList(role["rules"]) {
		if r["resourceNames"] != nil || r["nonResourceURLs"] != nil {
			t.Errorf("%s: rule %v: resourceNames and nonResourceURLs are not expected", key, r)
		}
		for _, g := range r["apiGroups"].([]any) {
			if g == "" {
				g = "core"
			}
			for _, res := range r["resources"].([]any) {
				for _, v := range r["verbs"].([]any) {
					out = append(out, fmt.Sprintf("%v %v %v", g, res, v))
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

// checkDeployRBAC checks that meshlens' ServiceAccount exists and is bound
// to a ClusterRole with exactly the rights meshlens uses, and to a Role of
// its namespace for its Lease.
func checkDeployRBAC(t *testing.T, m deployManifests, namespace, name string, istio, secrets bool, providers ...string) {
	t.Helper()
	sa, _ := dig(m.get(t, "StatefulSet/"+name), "spec", "template", "spec", "serviceAccountName").(string)
	if _, ok := m["ServiceAccount/"+sa]; !ok {
		t.Errorf("the pod runs as ServiceAccount %q, which the manifests do not define (they have %v)", sa, deployKeys(m))
	}
	for _, r := range []struct {
		kind  string
		rules []string
	}{
		{"ClusterRole", deployClusterRules(istio, secrets, providers...)},
		{"Role", deployLeaseRules},
	} {
		key := r.kind + "/" + name
		got := roleRules(t, key, m.get(t, key))
		for _, rule := range r.rules {
			if !slices.Contains(got, rule) {
				t.Errorf("%s does not grant %q, which meshlens uses", key, rule)
			}
		}
		for _, rule := range got {
			if !slices.Contains(r.rules, rule) {
				t.Errorf("%s grants %q, which meshlens does not use", key, rule)
			}
		}
		if unique := slices.Compact(slices.Clone(got)); len(unique) != len(got) {
			t.Errorf("%s grants some rights twice: %v", key, got)
		}
		binding := m.get(t, r.kind+"Binding/"+name)
		ref := dig(binding, "roleRef")
		if dig(ref, "kind") != r.kind || dig(ref, "name") != name || dig(ref, "apiGroup") != "rbac.authorization.k8s.io" {
			t.Errorf("%sBinding/%s refers to %v, want %s %s", r.kind, name, ref, r.kind, name)
		}
		bound := false
		for _, s := range yamlList(binding["subjects"]) {
			bound = bound || s["kind"] == "ServiceAccount" && s["name"] == sa && s["namespace"] == namespace
		}
		if !bound {
			t.Errorf("%sBinding/%s does not bind ServiceAccount %s/%s: subjects %v", r.kind, name, namespace, sa, binding["subjects"])
		}
	}
}

// checkDeployObjectsDecode decodes every object, strictly (no unknown or
// duplicate fields), with the Kubernetes API types: client-go's scheme, and
// apiextensions/v1 for the CRDs. It returns the typed objects by key.
func checkDeployObjectsDecode(t *testing.T, m deployManifests) map[string]runtime.Object {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := apiextensionsv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := gatewayv1.Install(scheme); err != nil {
		t.Fatal(err)
	}
	codec := kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme, scheme, kjson.SerializerOptions{Strict: true})
	out := map[string]runtime.Object{}
	for _, key := range deployKeys(m) {
		if m[key]["apiVersion"] == "monitoring.coreos.com/v1" {
			continue // the Prometheus Operator's kinds have no Go types here; helm_test checks their fields
		}
		js, err := json.Marshal(m[key])
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		obj, gvk, err := codec.Decode(js, nil, nil)
		if err != nil {
			t.Errorf("%s does not decode as a Kubernetes object: %v", key, err)
			continue
		}
		if want := m[key]["apiVersion"]; gvk.GroupVersion().String() != want {
			t.Errorf("%s decoded as %v, want apiVersion %v", key, gvk, want)
		}
		out[key] = obj
	}
	return out
}

func deployKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestDeployDockerfileCopiesUIBuildWhereUIEmbedsIt checks the one path the
// image build depends on that no compiler checks: the UI stage's output must
// land in ui/dist, which ui/ui.go embeds. (No Docker engine runs here.)
func TestDeployDockerfileCopiesUIBuildWhereUIEmbedsIt(t *testing.T) {
	root := repoRoot(t)
	read := func(p string) string {
		b, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	uiGo, vite, dockerfile := read("ui/ui.go"), read("ui/web/vite.config.ts"), read("deploy/Dockerfile")

	embed := regexp.MustCompile(`(?m)^//go:embed all:(\S+)$`).FindStringSubmatch(uiGo)
	outDir := regexp.MustCompile(`outDir:\s*['"]([^'"]+)['"]`).FindStringSubmatch(vite)
	if embed == nil || outDir == nil {
		t.Fatalf("cannot find the embed pattern in ui/ui.go (%v) or outDir in ui/web/vite.config.ts (%v)", embed, outDir)
	}
	embedDir := path.Join("ui", embed[1])

	// Follow WORKDIR per stage to resolve the COPY --from=ui line.
	workdir := map[string]string{}
	stage, uiWorkdir := "", ""
	var from, to string
	for _, line := range strings.Split(dockerfile, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 2 && f[0] == "FROM":
			stage = ""
			if len(f) >= 4 && f[2] == "AS" {
				stage = f[3]
			}
		case len(f) == 2 && f[0] == "WORKDIR":
			workdir[stage] = f[1]
			if stage == "ui" && uiWorkdir == "" {
				uiWorkdir = f[1]
			}
		case len(f) == 4 && f[0] == "COPY" && f[1] == "--from=ui":
			from, to = f[2], path.Join(workdir[stage], f[3])
		}
	}
	if from == "" {
		t.Fatal("deploy/Dockerfile has no `COPY --from=ui SRC DST` line")
	}
	if want := path.Join(uiWorkdir, outDir[1]); path.Clean(from) != want {
		t.Errorf("Dockerfile copies the UI from %s, but vite (outDir %s in %s) builds into %s", from, outDir[1], uiWorkdir, want)
	}
	if want := path.Join(workdir["build"], embedDir); to != want {
		t.Errorf("Dockerfile copies the UI to %s, ui/ui.go embeds %s (%s)", to, embedDir, want)
	}
	if !strings.Contains(dockerfile, "CGO_ENABLED=0") || !strings.Contains(dockerfile, "./cmd/meshlens") {
		t.Error("Dockerfile does not build ./cmd/meshlens with CGO_ENABLED=0 (the final image is distroless/static)")
	}
}
