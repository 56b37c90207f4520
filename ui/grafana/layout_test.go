package grafana

import (
	"archive/zip"
	"bufio"
	"context"
	"debug/elf"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/genproto/pluginv2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// pluginJSON is what Grafana reads of plugin.json to load a backend datasource.
type pluginJSON struct {
	Type        string `json:"type"`
	ID          string `json:"id"`
	Name        string `json:"name"`
	Backend     bool   `json:"backend"`
	Alerting    bool   `json:"alerting"`
	Annotations bool   `json:"annotations"`
	Metrics     bool   `json:"metrics"`
	Logs        bool   `json:"logs"`
	Tracing     bool   `json:"tracing"`
	Executable  string `json:"executable"`
	Info        struct {
		Version string `json:"version"`
		Updated string `json:"updated"`
		Logos   struct {
			Small string `json:"small"`
			Large string `json:"large"`
		} `json:"logos"`
	} `json:"info"`
	Dependencies struct {
		GrafanaDependency string `json:"grafanaDependency"`
	} `json:"dependencies"`
}

func readDist(t *testing.T) pluginJSON {
	t.Helper()
	b, err := os.ReadFile("dist/plugin.json")
	if err != nil {
		t.Fatalf("dist/plugin.json: %v (build the plugin first: make grafana-plugin)", err)
	}
	var p pluginJSON
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatalf("dist/plugin.json: %v", err)
	}
	return p
}

// grafanaProvides are the modules Grafana hands a plugin's module.js (its
// SystemJS import map); module.js may import nothing else.
var grafanaProvides = map[string]bool{
	"require": true, "exports": true, "module": true,
	"react": true, "react-dom": true, "rxjs": true, "lodash": true, "@emotion/css": true,
	"@grafana/data": true, "@grafana/ui": true, "@grafana/runtime": true, "@grafana/schema": true,
}

// TestDistIsWhatGrafanaLoads checks dist/ as Grafana's plugin loader reads
// it: plugin.json with the capabilities of issue 13, module.js as an AMD
// module importing only what Grafana provides, the logo it names, and the
// backend executables named as `executable` says for linux/amd64 and arm64.
func TestDistIsWhatGrafanaLoads(t *testing.T) {
	p := readDist(t)
	if p.Type != "datasource" || p.ID != "meshlens-datasource" || !p.Backend || !p.Alerting || !p.Annotations || !p.Metrics || !p.Logs || !p.Tracing {
		t.Errorf("plugin.json = %+v: want a datasource meshlens-datasource with backend, alerting, annotations, metrics, logs, tracing", p)
	}
	if p.Executable != "gpx_meshlens" {
		t.Errorf("executable = %q", p.Executable)
	}
	if !regexp.MustCompile(`^\d+\.\d+\.\d+$`).MatchString(p.Info.Version) || !regexp.MustCompile(`^\d{4}-\d{2}-\d{2}$`).MatchString(p.Info.Updated) {
		t.Errorf("info.version %q, info.updated %q: the build did not fill them", p.Info.Version, p.Info.Updated)
	}
	if p.Dependencies.GrafanaDependency == "" {
		t.Error("no grafanaDependency")
	}
	for _, logo := range []string{p.Info.Logos.Small, p.Info.Logos.Large} {
		if _, err := os.Stat(filepath.Join("dist", logo)); err != nil {
			t.Errorf("logo %s: %v", logo, err)
		}
	}

	mod, err := os.ReadFile("dist/module.js")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`^define\(\[([^\]]*)\]`).FindSubmatch(mod)
	if m == nil {
		t.Fatalf("dist/module.js is not an AMD module: %.80s", mod)
	}
	for _, dep := range strings.Split(string(m[1]), ",") {
		if dep = strings.Trim(dep, `" `); !grafanaProvides[dep] {
			t.Errorf("module.js imports %q, which Grafana does not provide", dep)
		}
	}
	for _, bundled := range []string{"react.production", "__SECRET_INTERNALS", "function createDataFrame"} {
		if strings.Contains(string(mod), bundled) {
			t.Errorf("module.js bundles %q: React or @grafana/* must stay external", bundled)
		}
	}
	if !strings.Contains(string(mod), "meshlens-url") || !strings.Contains(string(mod), "setConfigEditor") {
		t.Error("module.js lacks the config editor")
	}

	for arch, machine := range map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64} {
		name := filepath.Join("dist", p.Executable+"_linux_"+arch)
		st, err := os.Stat(name)
		if err != nil {
			t.Errorf("backend for linux/%s: %v", arch, err)
			continue
		}
		if st.Mode()&0o111 == 0 {
			t.Errorf("%s is not executable (%v)", name, st.Mode())
		}
		f, err := elf.Open(name)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if f.Machine != machine {
			t.Errorf("%s is built for %v, want %v", name, f.Machine, machine)
		}
		f.Close()
	}
}

// TestZipHoldsThePluginFolder checks the zip users unpack into Grafana's
// plugins directory: one folder named after the plugin id with dist's files,
// executables still executable.
func TestZipHoldsThePluginFolder(t *testing.T) {
	p := readDist(t)
	zr, err := zip.OpenReader(filepath.Join("..", "..", "bin", "meshlens-datasource-"+p.Info.Version+".zip"))
	if err != nil {
		t.Fatalf("the plugin zip: %v (make grafana-plugin builds it)", err)
	}
	defer zr.Close()
	files := map[string]os.FileMode{}
	for _, f := range zr.File {
		if !strings.HasPrefix(f.Name, "meshlens-datasource/") {
			t.Errorf("%s is outside the meshlens-datasource/ folder", f.Name)
		}
		files[strings.TrimPrefix(f.Name, "meshlens-datasource/")] = f.Mode()
	}
	for _, want := range []string{"plugin.json", "module.js", "img/logo.svg", "README.md", "gpx_meshlens_linux_amd64", "gpx_meshlens_linux_arm64"} {
		mode, ok := files[want]
		if !ok {
			t.Errorf("the zip lacks %s", want)
		}
		if strings.HasPrefix(want, "gpx_") && mode&0o111 == 0 {
			t.Errorf("%s is not executable in the zip (%v)", want, mode)
		}
	}
}

// TestBackendExecutableSpeaksThePluginProtocol starts dist's backend for
// this machine as Grafana does (go-plugin's handshake, the datasource
// magic cookie) and asks it for a health check over the plugin protocol.
func TestBackendExecutableSpeaksThePluginProtocol(t *testing.T) {
	if runtime.GOOS != "linux" || (runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64") {
		t.Skipf("no backend executable for %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	p := readDist(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join("dist", p.Executable+"_linux_"+runtime.GOARCH))
	cmd.Env = append(os.Environ(), "grafana_plugin_type=datasource", "PLUGIN_PROTOCOL_VERSIONS=2")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("no handshake line: %v", err)
	}
	// CORE-PROTOCOL|APP-PROTOCOL|NETWORK|ADDRESS|PROTOCOL
	parts := strings.Split(strings.TrimSpace(line), "|")
	if len(parts) < 5 || parts[1] != "2" || parts[4] != "grpc" {
		t.Fatalf("handshake %q: want plugin protocol 2 over grpc", line)
	}
	target := parts[3]
	if parts[2] == "unix" {
		target = "unix://" + target
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	res, err := pluginv2.NewDiagnosticsClient(conn).CheckHealth(ctx, &pluginv2.CheckHealthRequest{PluginContext: &pluginv2.PluginContext{
		PluginId: "meshlens-datasource",
		DataSourceInstanceSettings: &pluginv2.DataSourceInstanceSettings{
			Uid: "ds", Url: "http://127.0.0.1:1", JsonData: []byte(`{"timeoutSeconds":5}`), LastUpdatedMS: 1,
		},
	}})
	if err != nil {
		t.Fatalf("CheckHealth over the plugin protocol: %v", err)
	}
	if res.Status != pluginv2.CheckHealthResponse_ERROR || !strings.Contains(res.Message, "cannot reach meshlens at http://127.0.0.1:1") {
		t.Errorf("health of a meshlens that is not there = %v %q", res.Status, res.Message)
	}
}
