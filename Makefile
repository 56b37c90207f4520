# meshlens: `make run` starts everything; `make test` runs every test.
# Both install what they need on a fresh Debian machine (scripts/deps.sh).

SHELL := /bin/bash
GO ?= go
CLICKHOUSE_PORT ?= 19000
export CLICKHOUSE_PORT
TEST_DSN := clickhouse://127.0.0.1:$(CLICKHOUSE_PORT)/
HTTP ?= 127.0.0.1:8080
DATA_DIR ?= .run/data
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
# SBOM tools, pinned: CycloneDX's own generators for Go binaries and npm projects.
CYCLONEDX_GOMOD := github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod@v1.10.0
CYCLONEDX_NPM := @cyclonedx/cyclonedx-npm@6.0.1
SBOM_DIR ?= bin/sbom
# Fuzzing budget per target: `make fuzz` (FUZZTIME) and `make test` (FUZZTIME_SHORT).
FUZZTIME ?= 30s
FUZZTIME_SHORT ?= 3s

.PHONY: deps-run all build ui run test test-go test-fuzz test-ui api-types test-grafana grafana-plugin test-e2e test-addons bench fuzz lint sbom test-sbom clickhouse clickhouse-stop clickhouse-cluster clickhouse-cluster-stop deps k8s-bins clean

all: build

## build: the UI (when npm is present) and bin/meshlens with the UI embedded
build: ui
	$(GO) build -o bin/meshlens ./cmd/meshlens

ui:
	@if [ -f ui/web/package.json ] && command -v npm >/dev/null; then \
	  scripts/deps.sh run && (cd ui/web && npm run build --silent); \
	else echo "ui: npm not found; embedding the placeholder UI"; fi

## clickhouse: start a ClickHouse server owned by this checkout (installs it if missing)
clickhouse:
	@scripts/clickhouse.sh start >/dev/null

clickhouse-stop:
	@scripts/clickhouse.sh stop

## clickhouse-cluster: ZooKeeper and four ClickHouse servers (2 shards x 2 replicas, cluster "meshlens") on loopback
clickhouse-cluster:
	@scripts/clickhouse-cluster.sh start

clickhouse-cluster-stop:
	@scripts/clickhouse-cluster.sh stop

## run: ClickHouse, meshlens serve and the demo mesh; Ctrl-C stops everything
run: deps-run clickhouse build
	@scripts/run.sh

deps-run:
	@scripts/deps.sh run

deps:
	@scripts/deps.sh test

## k8s-bins: etcd, kube-apiserver and kubectl built from their Go modules (test/k8senv), cached in .run/k8s
k8s-bins:
	@scripts/k8s-bins.sh >/dev/null

## test: every test, against real ClickHouse, Kubernetes API server, Prometheus, Alertmanager, xDS peers and Chromium
test: deps clickhouse k8s-bins test-go test-fuzz test-ui test-grafana test-e2e test-sbom

# The store and query tests run on one server and on the ClickHouse cluster,
# started here once for all packages (and stopped after, unless it was
# running before); the cluster fault tests start clusters of their own.
test-go:
	@running=1; scripts/clickhouse-cluster.sh status >/dev/null || running=; \
	dsn=$$(scripts/clickhouse-cluster.sh start) || exit 1; \
	MESHLENS_TEST_CLICKHOUSE=$(TEST_DSN) MESHLENS_TEST_CLICKHOUSE_CLUSTER=$$dsn $(GO) test -count=1 -timeout 25m ./...; rc=$$?; \
	[ -n "$$running" ] || scripts/clickhouse-cluster.sh stop; exit $$rc

# Plain `go test` (test-go) runs every fuzz target's seed corpus; this
# fuzzes each for a short budget too.
test-fuzz:
	MESHLENS_TEST_CLICKHOUSE=$(TEST_DSN) scripts/fuzz.sh $(FUZZTIME_SHORT)

test-ui:
	@if [ -f ui/web/package.json ]; then (cd ui/web && npm test --silent); fi

## api-types: the UI's TypeScript types from query/openapi.yaml (run after changing it; make test-ui fails while they are stale)
api-types:
	cd ui/web && npm run gen:api --silent

## grafana-plugin: the meshlens Grafana datasource (unsigned): ui/grafana/dist and bin/meshlens-datasource-VERSION.zip
grafana-plugin:
	@scripts/grafana-plugin.sh

## test-grafana: the plugin's editors (Vitest), dist/ and the zip as Grafana loads them, and its backend over
## the plugin protocol against meshlens serve + ClickHouse (a module of its own: ui/grafana/go.mod; its
## packages are . and ./pkg/..., since ./... would take Go files that npm packages ship in node_modules)
test-grafana: grafana-plugin
	cd ui/grafana && npm test --silent
	cd ui/grafana && MESHLENS_TEST_CLICKHOUSE=$(TEST_DSN) $(GO) test -count=1 -timeout 10m . ./pkg/...

## test-addons: only Kiali's and Istio's dashboard queries against meshlens' /metrics/istio through a real Prometheus (make test runs it too)
test-addons: deps clickhouse
	MESHLENS_TEST_CLICKHOUSE=$(TEST_DSN) $(GO) test -count=1 -run TestKialiAndIstioDashboardsAgreeWithTheGraph -timeout 15m ./cmd/meshlens/

## test-e2e: the UI in headless Chromium against meshlens serve + the demo mesh
test-e2e: build
	MESHLENS_TEST_CLICKHOUSE=$(TEST_DSN) scripts/ui-e2e.sh

## bench: the performance scenarios, each printed against a reference measured in the same run
bench: deps clickhouse
	@echo "== ingest: OTLP spans/s end to end vs a plain clickhouse-go insert of the same rows"
	MESHLENS_TEST_CLICKHOUSE=$(TEST_DSN) $(GO) test -run '^$$' -bench Ingest -benchtime 1x ./collector/
	@echo "== ingest: OTLP spans/s through meshlens serve into the 2-shard x 2-replica ClickHouse cluster vs one server (make clickhouse-cluster-stop stops it)"
	MESHLENS_TEST_CLICKHOUSE=$(TEST_DSN) MESHLENS_TEST_CLICKHOUSE_CLUSTER=$$(scripts/clickhouse-cluster.sh start) $(GO) test -run '^$$' -bench IngestClusterVsSingle -benchtime 1x -timeout 20m ./cmd/meshlens/
	@echo "== ingest: OTLP spans/s through 1, 2 and 3 meshlens replicas into the ClickHouse cluster; ratio to one"
	MESHLENS_TEST_CLICKHOUSE=$(TEST_DSN) MESHLENS_TEST_CLICKHOUSE_CLUSTER=$$(scripts/clickhouse-cluster.sh start) $(GO) test -run '^$$' -bench IngestReplicas -benchtime 1x -timeout 25m ./cmd/meshlens/
	@echo "== rollouts: a failing canary rolled back by 3 replicas (leader election, merged judge) vs one meshlens"
	$(GO) test -run '^$$' -bench RollbackReplicas -benchtime 1x -timeout 20m ./cmd/meshlens/
	@echo "== graph query merged across 3 replicas vs one replica, HTTP+JSON, 10,000 edges"
	$(GO) test -run '^$$' -bench MergedGraphQuery -benchtime 1x ./replicas/
	@echo "== live graph query, 1,000 services x 3 versions, 10,000 edges; Prometheus source; ClickHouse 24 h history"
	MESHLENS_TEST_CLICKHOUSE=$(TEST_DSN) $(GO) test -run '^$$' -bench . -timeout 30m ./graph/ ./query/
	@echo "== rollouts: a breaking canary rolled back with serve's defaults (10 s graph buckets, 2 s judge) vs the tests' settings"
	MESHLENS_TEST_CLICKHOUSE=$(TEST_DSN) $(GO) test -run '^$$' -bench RollbackWithServeDefaults -benchtime 3x ./rollout/
	@echo "== rollouts: healthy canaries cycled end to end (MESHLENS_SOAK_DURATION, default 30m here); false rollbacks"
	MESHLENS_SOAK_DURATION=$${MESHLENS_SOAK_DURATION:-30m} MESHLENS_TEST_CLICKHOUSE=$(TEST_DSN) $(GO) test -run '^$$' -bench Soak -benchtime 1x -timeout 40m ./rollout/
	@echo "== UI: first render, pan/zoom frames per second and search of a 5,000-node, 20,000-edge graph in Chromium (issue 15's targets: < 2 s, >= 30 frames/s, search < 200 ms), each also as a ratio to a 1,000-node graph measured in the same run"
	cd ui/web && node e2e/timing.mjs --nodes 5000 --edges 20000 --runs 3 --reference-nodes 1000
	@echo "== xDS: a weight change pushed to 1,000 connected clients"
	$(GO) test -run '^$$' -bench PushWeightChange -benchtime 30x ./controlplane/xds/
	@echo "== xDS: per Envoy sidecar in a mesh of 1,000 services, xDS bytes and the time to make them, without and with a Sidecar scoping it to its namespace"
	$(GO) test -run '^$$' -bench SidecarScoping -benchtime 5x ./controlplane/xds/
	@echo "== xDS: one registry change pushed to 20 nodes over 1,000 Services vs a fresh translation of it; the registry's build after one change vs a full one"
	$(GO) test -run '^$$' -bench RegistryPush -benchtime 200x ./controlplane/xds/
	$(GO) test -run '^$$' -bench RegistryBuild -benchtime 100x ./controlplane/kube/
	@echo "== Kubernetes: 1,000 Services x 5 pods, 100 endpoint changes/s to connected xDS clients vs the same change through POST /api/v1/config"
	$(GO) test -run '^$$' -bench RegistryEndpointChurn -benchtime 1x -timeout 60m ./controlplane/kube/

## fuzz: every fuzz target (each `func Fuzz...`, found by scripts/fuzz.sh) for FUZZTIME each (make fuzz FUZZTIME=5m)
fuzz:
	MESHLENS_TEST_CLICKHOUSE=$(TEST_DSN) scripts/fuzz.sh $(FUZZTIME)

## sbom: CycloneDX SBOMs (JSON) of bin/meshlens, from the Go modules linked into it, and of the UI's npm packages
sbom: build
	@mkdir -p $(SBOM_DIR)
	$(GO) run $(CYCLONEDX_GOMOD) bin -json -output $(SBOM_DIR)/meshlens.cdx.json bin/meshlens
	@if [ -f ui/web/package.json ] && command -v npm >/dev/null; then \
	  cd ui/web && npx --yes $(CYCLONEDX_NPM) --omit dev --output-format JSON --output-file $(abspath $(SBOM_DIR))/ui.cdx.json; \
	else echo "sbom: npm not found; no SBOM of the UI's packages"; fi
	@echo "sbom: $(SBOM_DIR)/meshlens.cdx.json $(SBOM_DIR)/ui.cdx.json"

## test-sbom: make sbom, then check both are valid CycloneDX 1.6 (CycloneDX's JSON schemas) naming every module
## linked into bin/meshlens and every production npm package of ui/web/package-lock.json at its version
test-sbom: sbom
	MESHLENS_TEST_SBOM_DIR=$(abspath $(SBOM_DIR)) $(GO) test -count=1 ./internal/sbomtest/

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	cd ui/grafana && $(GO) vet . ./pkg/... && $(GO) run $(STATICCHECK) . ./pkg/...

clean:
	rm -rf bin
