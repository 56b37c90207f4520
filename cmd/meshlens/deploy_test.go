package main

import (
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// The deployManifests in deploy/kubernetes are checked against serve's own config
// loader: a manifest whose ConfigMap, ports, probes or volumes disagree with
// what `meshlens serve` would do with them fails here, not in a cluster.

const deployNamespace = "meshlens-system"

// deployManifests is deploy/kubernetes/meshlens.yaml, one map per YAML document,
// indexed by "Kind/name".
type deployManifests map[string]map[string]any

func loadManifests(t *testing.T) deployManifests {
	t.Helper()
	file := filepath.Join(repoRoot(t), "deploy", "kubernetes", "meshlens.yaml")
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	docs := regexp.MustCompile(`(?m)^---[ \t]*$`).Split(string(data), -1)
	m := deployManifests{}
	for i, doc := range docs {
		var obj map[string]any
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			t.Fatalf("%s: document %d: %v", file, i, err)
		}
		if obj == nil {
			continue // only comments
		}
		kind, _ := obj["kind"].(string)
		name, _ := dig(obj, "metadata", "name").(string)
		if kind == "" || name == "" || obj["apiVersion"] == nil {
			t.Fatalf("%s: document %d has no apiVersion, kind or metadata.name", file, i)
		}
		key := kind + "/" + name
		if _, dup := m[key]; dup {
			t.Fatalf("%s: %s defined twice", file, key)
		}
		m[key] = obj
	}
	return m
}

func (m deployManifests) get(t *testing.T, key string) map[string]any {
	t.Helper()
	obj, ok := m[key]
	if !ok {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		t.Fatalf("deploy/kubernetes/meshlens.yaml has no %s; it has %v", key, keys)
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

func TestDeployManifestConfigLoadsWithServeAndMatchesPortsProbesAndVolumes(t *testing.T) {
	m := loadManifests(t)
	cm := m.get(t, "ConfigMap/meshlens")
	sts := m.get(t, "StatefulSet/meshlens")
	svc := m.get(t, "Service/meshlens")
	c := podContainer(t, sts, "meshlens")

	for key, obj := range m {
		if obj["kind"] == "Namespace" {
			continue
		}
		if ns := dig(obj, "metadata", "namespace"); ns != deployNamespace {
			t.Errorf("%s: namespace %v, want %s", key, ns, deployNamespace)
		}
	}
	m.get(t, "Namespace/"+deployNamespace)
	if sa := dig(sts, "spec", "template", "spec", "serviceAccountName"); sa != nil {
		m.get(t, "ServiceAccount/"+sa.(string))
	}

	// The container runs `meshlens serve --config <file from the ConfigMap>`:
	// run the same arguments through serve's loader, with the file written
	// where the test can read it.
	content, ok := dig(cm, "data", "meshlens.yaml").(string)
	if !ok {
		t.Fatal("ConfigMap meshlens has no data[meshlens.yaml]")
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
	cfg, err := loadServeConfig(args, io.Discard)
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
			t.Errorf("--%s: container port %s (%d) is not in Service meshlens (service ports: %v)", l.flag, name, port, sports)
		} else if sp != [2]int{port, port} {
			t.Errorf("--%s: Service port %s is %d → %d, want %d → %d (clients are configured with serve's port)", l.flag, name, sp[0], sp[1], port, port)
		}
	}
	for name, n := range cports {
		if !listening[n] {
			t.Errorf("container declares port %s (%d), but serve listens on none such with this config", name, n)
		}
		if _, ok := sports[name]; !ok {
			t.Errorf("container port %s (%d) is not in Service meshlens", name, n)
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
		t.Error("Service meshlens has no selector")
	}
	for k, v := range sel {
		if labels[k] != v {
			t.Errorf("Service meshlens selects %s=%v, the pod is labelled %v", k, v, labels)
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
	// GitOps directory from their ConfigMaps.
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
	if !ok {
		t.Errorf("no volume is mounted at --data-dir %s (mounts: %v)", cfg.DataDir, deployKeys(mounts))
	} else if !claims[fmt.Sprint(data["name"])] {
		t.Errorf("--data-dir %s is volume %v, not one of the volumeClaimTemplates %v: the queue, config and token would not survive a restart", cfg.DataDir, data["name"], claims)
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
	for _, want := range []struct{ path, configMap, subPath string }{
		{cfgPath, "meshlens", "meshlens.yaml"},
		{cfg.ConfigDir, "meshlens-mesh-config", ""},
	} {
		vm, ok := mounts[want.path]
		if !ok {
			t.Errorf("nothing is mounted at %s (mounts: %v)", want.path, deployKeys(mounts))
			continue
		}
		if got := fmt.Sprint(dig(volumes[fmt.Sprint(vm["name"])], "configMap", "name")); got != want.configMap {
			t.Errorf("%s is mounted from ConfigMap %q, want %q", want.path, got, want.configMap)
		}
		if got, _ := vm["subPath"].(string); got != want.subPath {
			t.Errorf("%s subPath %q, want %q", want.path, got, want.subPath)
		}
		m.get(t, "ConfigMap/"+want.configMap)
	}

	// --clickhouse names the clickhouse Service of this file.
	u, err := url.Parse(cfg.ClickHouse)
	if err != nil {
		t.Fatalf("--clickhouse %q: %v", cfg.ClickHouse, err)
	}
	if want := "clickhouse." + deployNamespace + ".svc"; u.Hostname() != want {
		t.Errorf("--clickhouse host %q, want the Service %s", u.Hostname(), want)
	}
	ch := m.get(t, "StatefulSet/clickhouse")
	chPorts := deployServicePorts(t, m.get(t, "Service/clickhouse"), podContainerPorts(t, podContainer(t, ch, "clickhouse")))
	native := false
	for _, sp := range chPorts {
		native = native || strconv.Itoa(sp[0]) == u.Port() && sp[1] == 9000
	}
	if !native {
		t.Errorf("--clickhouse port %s is not a Service clickhouse port reaching the native port 9000 (ports: %v)", u.Port(), chPorts)
	}
	if db := strings.Trim(u.Path, "/"); db != "meshlens" {
		t.Errorf("--clickhouse database %q; deploy/grafana's datasource defaults to meshlens", db)
	}
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
