package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/install"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	crdvalidation "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/validation"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/meshlens/meshlens/alerting"
	"github.com/meshlens/meshlens/internal/kubetest"
	"github.com/meshlens/meshlens/rollout"
)

// The CRDs of deploy/crds are checked as the API server would check them
// when they are created, and then as it would check a Rollout or AlertRule
// against them; their schemas are compared with the Go types meshlens
// decodes, so that a field added to one and not the other fails here.

// deployCRD is one CRD of deploy/crds: as written (v1), in the API server's
// internal form, and its version's schema ready to validate and prune with.
type deployCRD struct {
	file       string
	v1         *apiextensionsv1.CustomResourceDefinition
	schema     *apiextensionsv1.JSONSchemaProps
	structural *structuralschema.Structural
	validator  validation.SchemaValidator
}

func loadDeployCRDs(t *testing.T) map[string]*deployCRD { // by kind
	t.Helper()
	scheme := runtime.NewScheme()
	install.Install(scheme)
	files, err := filepath.Glob(filepath.Join(repoRoot(t), "deploy", "crds", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no deploy/crds/*.yaml (%v)", err)
	}
	out := map[string]*deployCRD{}
	for _, f := range files {
		rel, _ := filepath.Rel(repoRoot(t), f)
		m := loadManifests(t, rel)
		if len(m) != 1 {
			t.Fatalf("%s: want one CRD, got %v", rel, deployKeys(m))
		}
		var crd *apiextensionsv1.CustomResourceDefinition
		for key, obj := range checkDeployObjectsDecode(t, m) {
			var ok bool
			if crd, ok = obj.(*apiextensionsv1.CustomResourceDefinition); !ok {
				t.Fatalf("%s: %s is not a CustomResourceDefinition", rel, key)
			}
		}
		if crd == nil {
			t.FailNow()
		}
		// What the API server does on create: defaults, then validation of the
		// internal form, which includes the structural schema rules.
		defaulted := crd.DeepCopy()
		apiextensionsv1.SetObjectDefaults_CustomResourceDefinition(defaulted)
		var internal apiextensions.CustomResourceDefinition
		if err := scheme.Convert(defaulted, &internal, nil); err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
		if errs := crdvalidation.ValidateCustomResourceDefinition(context.Background(), &internal); len(errs) > 0 {
			t.Errorf("%s: the API server would refuse it:\n%v", rel, errs.ToAggregate())
		}
		// The internal form holds a schema that all versions share at the top.
		validationOf := internal.Spec.Validation
		if len(internal.Spec.Versions) == 1 && internal.Spec.Versions[0].Schema != nil {
			validationOf = internal.Spec.Versions[0].Schema
		}
		if len(internal.Spec.Versions) != 1 || validationOf == nil || validationOf.OpenAPIV3Schema == nil {
			t.Fatalf("%s: want one version with a schema", rel)
		}
		internalSchema := validationOf.OpenAPIV3Schema
		s, err := structuralschema.NewStructural(internalSchema)
		if err != nil {
			t.Fatalf("%s: schema: %v", rel, err)
		}
		if errs := structuralschema.ValidateStructural(nil, s); len(errs) > 0 {
			t.Errorf("%s: the schema is not structural:\n%v", rel, errs.ToAggregate())
		}
		v, _, err := validation.NewSchemaValidator(internalSchema)
		if err != nil {
			t.Fatalf("%s: schema validator: %v", rel, err)
		}
		out[crd.Spec.Names.Kind] = &deployCRD{file: rel, v1: crd, schema: crd.Spec.Versions[0].Schema.OpenAPIV3Schema, structural: s, validator: v}
	}
	return out
}

// check validates obj as the API server would a create: it returns the
// schema's errors and the fields pruning would drop silently.
func (c *deployCRD) check(obj map[string]any) (errs []string, pruned []string) {
	for _, e := range validation.ValidateCustomResource(nil, obj, c.validator) {
		errs = append(errs, e.Error())
	}
	var cp map[string]any
	b, _ := json.Marshal(obj)
	_ = json.Unmarshal(b, &cp)
	pruned = pruning.PruneWithOptions(cp, c.structural, true, structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true})
	return errs, pruned
}

func TestDeployCRDsAreValidStructuralMeshlensV1alpha1WithStatusAndColumns(t *testing.T) {
	crds := loadDeployCRDs(t)
	for _, want := range []struct {
		kind, plural, shortName string
		columns                 []string // name=jsonPath
	}{
		{"Rollout", "rollouts", "mlrollout", []string{
			"Service=.spec.service", "Phase=.status.phase", "Step=.status.step", "Canary %=.status.weights.candidate",
			"Verdict=.status.lastVerdict.result", "Age=.metadata.creationTimestamp"}},
		{"AlertRule", "alertrules", "mlalert", []string{
			"Metric=.spec.condition.metric", "Service=.spec.condition.service", "State=.status.state", "Age=.metadata.creationTimestamp"}},
	} {
		t.Run(want.kind, func(t *testing.T) {
			c, ok := crds[want.kind]
			if !ok {
				t.Fatalf("deploy/crds has no CRD of kind %s", want.kind)
			}
			spec := c.v1.Spec
			if spec.Group != "meshlens.io" || spec.Scope != apiextensionsv1.NamespaceScoped || spec.Names.Plural != want.plural {
				t.Errorf("%s: group %s, scope %s, plural %s; want meshlens.io, Namespaced, %s", c.file, spec.Group, spec.Scope, spec.Names.Plural, want.plural)
			}
			if want := want.plural + ".meshlens.io"; c.file != filepath.Join("deploy", "crds", want+".yaml") {
				t.Errorf("%s: want the file named %s.yaml", c.file, want)
			}
			if !slices.Contains(spec.Names.ShortNames, want.shortName) || slices.Contains(spec.Names.ShortNames, "ro") {
				t.Errorf("%s: short names %v, want %s (and not Argo Rollouts' ro)", c.file, spec.Names.ShortNames, want.shortName)
			}
			v := spec.Versions[0]
			if v.Name != "v1alpha1" || !v.Served || !v.Storage {
				t.Errorf("%s: version %s served=%v storage=%v, want v1alpha1 served and stored", c.file, v.Name, v.Served, v.Storage)
			}
			if v.Subresources == nil || v.Subresources.Status == nil {
				t.Errorf("%s: no status subresource: meshlens' status writes would also change the spec", c.file)
			}
			var columns []string
			for _, col := range v.AdditionalPrinterColumns {
				columns = append(columns, col.Name+"="+col.JSONPath)
			}
			if !slices.Equal(columns, want.columns) {
				t.Errorf("%s: printer columns %q, want %q", c.file, columns, want.columns)
			}
		})
	}
}

// The chart cannot read files outside its folder, so it carries a copy.
func TestDeployCRDCopiesInTheHelmChartAreIdentical(t *testing.T) {
	root := repoRoot(t)
	names := func(dir string) []string {
		files, err := filepath.Glob(filepath.Join(root, dir, "*.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		for i, f := range files {
			files[i] = filepath.Base(f)
		}
		return files
	}
	src, cp := names("deploy/crds"), names("deploy/helm/meshlens/files/crds")
	if !slices.Equal(src, cp) {
		t.Fatalf("deploy/crds has %v, the chart's files/crds has %v; copy them: cp deploy/crds/*.yaml deploy/helm/meshlens/files/crds/", src, cp)
	}
	for _, name := range src {
		a, errA := os.ReadFile(filepath.Join(root, "deploy/crds", name))
		b, errB := os.ReadFile(filepath.Join(root, "deploy/helm/meshlens/files/crds", name))
		if errA != nil || errB != nil {
			t.Fatal(errA, errB)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("deploy/helm/meshlens/files/crds/%s differs from deploy/crds/%s; copy it: cp deploy/crds/*.yaml deploy/helm/meshlens/files/crds/", name, name)
		}
	}
}

// TestDeployCRDSchemasMatchTheGoTypes walks each schema beside the Go type
// meshlens decodes (or writes) there: the same JSON field names, and types
// that encoding/json would accept.
func TestDeployCRDSchemasMatchTheGoTypes(t *testing.T) {
	crds := loadDeployCRDs(t)
	prop := func(kind string, path ...string) *apiextensionsv1.JSONSchemaProps {
		s := crds[kind].schema
		for _, p := range path {
			next, ok := s.Properties[p]
			if !ok {
				t.Fatalf("%s schema has no %s", kind, strings.Join(path, "."))
			}
			s = &next
		}
		return s
	}
	for _, c := range []struct {
		name   string
		schema *apiextensionsv1.JSONSchemaProps
		typ    reflect.Type
		// exact: every field of the type is in the schema, and no more.
		// Otherwise the schema names a subset (the rest is preserved as is).
		exact bool
	}{
		{"Rollout spec", prop("Rollout", "spec"), reflect.TypeFor[rollout.Spec](), true},
		{"Rollout status.weights", prop("Rollout", "status", "weights"), reflect.TypeFor[rollout.Weights](), true},
		{"Rollout status.lastVerdict", prop("Rollout", "status", "lastVerdict"), reflect.TypeFor[rollout.Verdict](), false},
		{"Rollout status.lastVerdict.candidate", prop("Rollout", "status", "lastVerdict", "candidate"), reflect.TypeFor[rollout.VersionNumbers](), true},
		{"Rollout status.lastVerdict.stable", prop("Rollout", "status", "lastVerdict", "stable"), reflect.TypeFor[rollout.VersionNumbers](), true},
		{"Rollout status.conditions", prop("Rollout", "status", "conditions"), reflect.TypeFor[[]metav1.Condition](), true},
		{"AlertRule spec", prop("AlertRule", "spec"), reflect.TypeFor[alerting.RuleSpec](), true},
		{"AlertRule status.conditions", prop("AlertRule", "status", "conditions"), reflect.TypeFor[[]metav1.Condition](), true},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, e := range compareSchemaWithType(c.name, c.schema, c.typ, c.exact) {
				t.Error(e)
			}
		})
	}

	// The enums are the Go constants.
	enum := func(s *apiextensionsv1.JSONSchemaProps) []string {
		var out []string
		for _, e := range s.Enum {
			var v string
			_ = json.Unmarshal(e.Raw, &v)
			out = append(out, v)
		}
		sort.Strings(out)
		return out
	}
	sorted := func(s ...string) []string { sort.Strings(s); return s }
	for _, c := range []struct {
		name string
		got  []string
		want []string
	}{
		{"Rollout status.phase", enum(prop("Rollout", "status", "phase")), sorted(string(rollout.Pending), string(rollout.Progressing),
			string(rollout.Paused), string(rollout.Promoting), string(rollout.Succeeded), string(rollout.RollingBack), string(rollout.RolledBack), string(rollout.Failed), string(rollout.Refused))},
		{"Rollout spec.trafficProvider", enum(prop("Rollout", "spec", "trafficProvider")), sorted(slices.Clone(rollout.Providers)...)},
		{"Rollout status.lastVerdict.result", enum(prop("Rollout", "status", "lastVerdict", "result")), sorted(string(rollout.Pass), string(rollout.Fail), string(rollout.Inconclusive))},
		{"AlertRule spec.condition.metric", enum(prop("AlertRule", "spec", "condition", "metric")), sorted(alerting.MetricErrorRate, alerting.MetricLatencyP50,
			alerting.MetricLatencyP90, alerting.MetricLatencyP99, alerting.MetricRPS, alerting.MetricQPSDrop)},
	} {
		if !slices.Equal(c.got, c.want) {
			t.Errorf("%s: enum %q, want %q", c.name, c.got, c.want)
		}
	}
}

var (
	durationType = reflect.TypeFor[rollout.Duration]()
	timeTypes    = []reflect.Type{reflect.TypeFor[time.Time](), reflect.TypeFor[metav1.Time]()}
)

func compareSchemaWithType(path string, s *apiextensionsv1.JSONSchemaProps, typ reflect.Type, exact bool) []string {
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	wantType := ""
	switch {
	case typ == durationType:
		// In a spec, users write it: the pattern refuses what meshlens
		// would (TestDeployCRDDurationPatternAgreesWithParseDuration).
		if s.Type != "string" || strings.Contains(path, " spec.") && !strings.Contains(s.Pattern, "ns|us") {
			return []string{fmt.Sprintf("%s: a duration (%s) is written \"30s\": want type string (in a spec, with the duration pattern), got %q, pattern %q", path, typ, s.Type, s.Pattern)}
		}
		return nil
	case slices.Contains(timeTypes, typ):
		if s.Type != "string" || s.Format != "date-time" {
			return []string{fmt.Sprintf("%s: %s wants type string, format date-time; got %q, %q", path, typ, s.Type, s.Format)}
		}
		return nil
	}
	switch typ.Kind() {
	case reflect.String:
		wantType = "string"
	case reflect.Bool:
		wantType = "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		wantType = "integer"
	case reflect.Float32, reflect.Float64:
		wantType = "number"
	case reflect.Slice:
		wantType = "array"
	case reflect.Map, reflect.Struct:
		wantType = "object"
	default:
		return []string{fmt.Sprintf("%s: Go type %s has no schema rule here", path, typ)}
	}
	if s.Type != wantType {
		return []string{fmt.Sprintf("%s: schema type %q, Go type %s wants %q", path, s.Type, typ, wantType)}
	}
	var errs []string
	switch typ.Kind() {
	case reflect.Slice:
		if s.Items == nil || s.Items.Schema == nil {
			return []string{fmt.Sprintf("%s: an array without items", path)}
		}
		return compareSchemaWithType(path+"[]", s.Items.Schema, typ.Elem(), exact)
	case reflect.Map:
		if typ.Key().Kind() != reflect.String || s.AdditionalProperties == nil || s.AdditionalProperties.Schema == nil {
			return []string{fmt.Sprintf("%s: map %s wants additionalProperties with a schema", path, typ)}
		}
		return compareSchemaWithType(path+"{}", s.AdditionalProperties.Schema, typ.Elem(), exact)
	case reflect.Struct:
		fields := map[string]reflect.Type{}
		for f := range typ.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" || !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			fields[name] = f.Type
		}
		for name, ft := range fields {
			ps, ok := s.Properties[name]
			if !ok {
				if exact {
					errs = append(errs, fmt.Sprintf("%s: Go field %q (%s) is not in the schema: the API server would drop it", path, name, ft))
				}
				continue
			}
			errs = append(errs, compareSchemaWithType(path+"."+name, &ps, ft, exact)...)
		}
		for name := range s.Properties {
			if _, ok := fields[name]; !ok {
				errs = append(errs, fmt.Sprintf("%s: schema property %q is no field of %s", path, name, typ))
			}
		}
	}
	sort.Strings(errs)
	return errs
}

// deployExampleObjects reads the YAML documents of examples/ files.
func deployExampleObjects(t *testing.T, pattern string) map[string]map[string]any { // "file#i" → object
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot(t), "examples", pattern))
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples/%s (%v)", pattern, err)
	}
	out := map[string]map[string]any{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range strings.Split(string(data), "\n---") {
			var obj map[string]any
			if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
				t.Fatalf("%s: document %d: %v", f, i, err)
			}
			if obj != nil {
				out[fmt.Sprintf("examples/%s#%d", filepath.Base(f), i)] = obj
			}
		}
	}
	return out
}

func TestDeployExamplesValidateAgainstTheirCRD(t *testing.T) {
	crds := loadDeployCRDs(t)
	for pattern, kind := range map[string]string{"rollout-*.yaml": "Rollout", "alertrule-*.yaml": "AlertRule"} {
		for name, obj := range deployExampleObjects(t, pattern) {
			t.Run(name, func(t *testing.T) {
				if obj["apiVersion"] != "meshlens.io/v1alpha1" || obj["kind"] != kind {
					t.Fatalf("apiVersion %v kind %v, want meshlens.io/v1alpha1 %s", obj["apiVersion"], obj["kind"], kind)
				}
				errs, pruned := crds[kind].check(obj)
				if len(errs) > 0 {
					t.Errorf("the API server would refuse it: %v", errs)
				}
				if len(pruned) > 0 {
					t.Errorf("the API server would silently drop %v", pruned)
				}
			})
		}
	}
}

// TestDeployCRDSchemasRefuseWhatMeshlensRefuses: objects that meshlens'
// own validation refuses, and that the schema can say no to, are refused by
// the API server already, at kubectl apply.
func TestDeployCRDSchemasRefuseWhatMeshlensRefuses(t *testing.T) {
	crds := loadDeployCRDs(t)
	rolloutSpec := func(edit func(spec map[string]any)) map[string]any {
		spec := map[string]any{
			"service": "reviews", "stable": "v2", "candidate": "v3",
			"strategy": map[string]any{"canary": map[string]any{"steps": []any{10, 50, 100}, "minDuration": "1m"}},
		}
		edit(spec)
		return map[string]any{"apiVersion": "meshlens.io/v1alpha1", "kind": "Rollout",
			"metadata": map[string]any{"name": "r", "namespace": "ns"}, "spec": spec}
	}
	ruleSpec := func(edit func(spec map[string]any)) map[string]any {
		spec := map[string]any{"condition": map[string]any{"metric": "errorRate", "service": "reviews", "threshold": 0.05}}
		edit(spec)
		return map[string]any{"apiVersion": "meshlens.io/v1alpha1", "kind": "AlertRule",
			"metadata": map[string]any{"name": "a", "namespace": "ns"}, "spec": spec}
	}
	canary := func(s map[string]any) map[string]any { return dig(s, "strategy", "canary").(map[string]any) }
	for _, c := range []struct {
		name   string
		obj    map[string]any
		refuse string // a part of the API server's error; "" to accept
	}{
		{"a valid canary", rolloutSpec(func(map[string]any) {}), ""},
		{"a rollout without stable", rolloutSpec(func(s map[string]any) { delete(s, "stable") }), "spec.stable: Required"},
		{"two strategies", rolloutSpec(func(s map[string]any) {
			s["strategy"].(map[string]any)["ab"] = map[string]any{"match": []any{map[string]any{"header": "x", "exact": "1"}}}
		}), "spec.strategy"},
		{"no strategy", rolloutSpec(func(s map[string]any) { s["strategy"] = map[string]any{} }), "spec.strategy"},
		{"a step above 100", rolloutSpec(func(s map[string]any) { canary(s)["steps"] = []any{50, 150} }), "spec.strategy.canary.steps[1]"},
		{"no steps", rolloutSpec(func(s map[string]any) { canary(s)["steps"] = []any{} }), "spec.strategy.canary.steps"},
		{"a duration without unit", rolloutSpec(func(s map[string]any) { canary(s)["minDuration"] = "30" }), "spec.strategy.canary.minDuration"},
		{"a negative duration", rolloutSpec(func(s map[string]any) { canary(s)["minDuration"] = "-1m" }), "spec.strategy.canary.minDuration"},
		{"a match on header and cookie", rolloutSpec(func(s map[string]any) {
			canary(s)["match"] = []any{map[string]any{"header": "x", "cookie": "y", "exact": "1"}}
		}), "spec.strategy.canary.match[0]"},
		{"maxErrorRate above 1", rolloutSpec(func(s map[string]any) { s["analysis"] = map[string]any{"maxErrorRate": 2} }), "spec.analysis.maxErrorRate"},
		{"alpha 0.5", rolloutSpec(func(s map[string]any) { s["analysis"] = map[string]any{"alpha": 0.5} }), "spec.analysis.alpha"},
		{"a valid rule", ruleSpec(func(map[string]any) {}), ""},
		{"an unknown metric", ruleSpec(func(s map[string]any) { s["condition"].(map[string]any)["metric"] = "p99" }), "spec.condition.metric: Unsupported value"},
		{"op >=", ruleSpec(func(s map[string]any) { s["condition"].(map[string]any)["op"] = ">=" }), "spec.condition.op"},
		{"a negative threshold", ruleSpec(func(s map[string]any) { s["condition"].(map[string]any)["threshold"] = -1 }), "spec.condition.threshold"},
		{"a receiver without url", ruleSpec(func(s map[string]any) { s["receivers"] = []any{map[string]any{"name": "x"}} }), "spec.receivers[0].url: Required"},
		{"a receiver with a ftp url", ruleSpec(func(s map[string]any) { s["receivers"] = []any{map[string]any{"name": "x", "url": "ftp://h/"}} }), "spec.receivers[0].url"},
		{"an action without rollback", ruleSpec(func(s map[string]any) { s["action"] = map[string]any{} }), "spec.action.rollback: Required"},
	} {
		t.Run(c.name, func(t *testing.T) {
			errs, pruned := crds[fmt.Sprint(c.obj["kind"])].check(c.obj)
			if len(pruned) > 0 {
				t.Errorf("pruned %v", pruned)
			}
			switch {
			case c.refuse == "" && len(errs) > 0:
				t.Errorf("refused: %v", errs)
			case c.refuse != "" && !slices.ContainsFunc(errs, func(e string) bool { return strings.Contains(e, c.refuse) }):
				t.Errorf("want an error about %q, got %v", c.refuse, errs)
			}
		})
	}
}

// TestDeployCRDStatusTakesWhatMeshlensWrites: a status as the contract
// describes it, with a verdict marshalled from rollout.Verdict, is accepted
// and nothing of it is dropped.
func TestDeployCRDStatusTakesWhatMeshlensWrites(t *testing.T) {
	crds := loadDeployCRDs(t)
	at := time.Date(2026, 3, 1, 12, 0, 0, 500, time.UTC)
	verdict := rollout.Verdict{At: at, Step: 1, Result: rollout.Fail, Reasons: []string{"error rate 0.31 > 0.05 (p=1e-9)"},
		Window:     rollout.Duration{Duration: 30 * time.Second},
		Candidate:  rollout.VersionNumbers{Version: "v3", Requests: 320, Errors: 99, ErrorRate: 0.31, P50Ms: 4, P99Ms: 21.5, Samples: 320, MedianMs: 4},
		Stable:     rollout.VersionNumbers{Version: "v2", Requests: 2900, Errors: 1, ErrorRate: 0.0003, P50Ms: 3, P99Ms: 12},
		ErrorRateP: 1e-9, P99P: 1, ErrorZ: 17.2, ErrorP: 1e-40, ErrorIncreaseLow: 0.25, LatencyU: 1e5, LatencyZ: 1.1, LatencyP: 0.13, LatencyEffect: 0.53}
	condition := metav1.Condition{Type: "Ready", Status: metav1.ConditionFalse, ObservedGeneration: 3,
		LastTransitionTime: metav1.NewTime(at), Reason: "RolledBack", Message: "the judge failed v3 twice"}
	asMap := func(v any) any {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var out any
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	for _, c := range []struct {
		kind   string
		status map[string]any
	}{
		{"Rollout", map[string]any{
			"phase": string(rollout.RolledBack), "step": 1, "message": "rolled back: the judge failed v3",
			"weights":     asMap(rollout.Weights{Stable: 100, Candidate: 0}),
			"lastVerdict": asMap(verdict), "observedGeneration": 3,
			"conditions": []any{asMap(condition)},
		}},
		{"AlertRule", map[string]any{
			"state": "firing", "activeSince": at.Format(time.RFC3339), "lastEvaluation": at.Format(time.RFC3339Nano), "value": 0.31,
			"observedGeneration": 1, "conditions": []any{asMap(condition)},
		}},
	} {
		t.Run(c.kind, func(t *testing.T) {
			obj := map[string]any{"apiVersion": "meshlens.io/v1alpha1", "kind": c.kind, "metadata": map[string]any{"name": "x", "namespace": "ns"},
				"spec": map[string]any{}, "status": c.status}
			errs, pruned := crds[c.kind].check(obj)
			for _, e := range errs {
				if strings.HasPrefix(e, "status") {
					t.Errorf("status refused: %s", e)
				}
			}
			if len(pruned) > 0 {
				t.Errorf("the API server would drop %v of the status", pruned)
			}
		})
	}
}

// The duration pattern of the schemas accepts what time.ParseDuration takes
// (negative durations aside: meshlens refuses them) and nothing else.
func TestDeployCRDDurationPatternAgreesWithParseDuration(t *testing.T) {
	crds := loadDeployCRDs(t)
	pattern := crds["Rollout"].schema.Properties["spec"].Properties["analysis"].Properties["interval"].Pattern
	if pattern == "" {
		t.Fatal("Rollout spec.analysis.interval has no pattern")
	}
	for _, kind := range []string{"Rollout", "AlertRule"} {
		var walk func(path string, s apiextensionsv1.JSONSchemaProps)
		walk = func(path string, s apiextensionsv1.JSONSchemaProps) {
			if strings.Contains(s.Pattern, "ns|us") && s.Pattern != pattern {
				t.Errorf("%s %s: duration pattern %q, want %q", kind, path, s.Pattern, pattern)
			}
			for name, p := range s.Properties {
				walk(path+"."+name, p)
			}
		}
		walk("", *crds[kind].schema)
	}
	for _, d := range []string{"0", "30s", "2m", "1h30m", "1.5h", "500ms", "10us", "10µs", ".5s", "1m0.5s", "30", "", "-1s", "1d", "s", "1.s", "+1s", "1 m"} {
		_, err := time.ParseDuration(d)
		wantOK := err == nil && !strings.HasPrefix(d, "-") && !strings.HasPrefix(d, "+")
		obj := map[string]any{"apiVersion": "meshlens.io/v1alpha1", "kind": "Rollout", "metadata": map[string]any{"name": "r"},
			"spec": map[string]any{"service": "s", "stable": "a", "candidate": "b",
				"strategy": map[string]any{"canary": map[string]any{"steps": []any{100}}}, "analysis": map[string]any{"interval": d}}}
		errs, _ := crds["Rollout"].check(obj)
		if gotOK := len(errs) == 0; gotOK != wantOK {
			t.Errorf("duration %q: schema accepts=%v, time.ParseDuration (non-negative) accepts=%v (%v)", d, gotOK, wantOK, errs)
		}
	}
}

// TestDeployCRDColumnsInKubectlGet applies the examples to a real
// kube-apiserver (kubetest installs deploy/crds), writes a status through
// the status subresource as meshlens does, and reads the printer columns
// with kubectl, as a user would.
func TestDeployCRDColumnsInKubectlGet(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a kube-apiserver")
	}
	cluster := kubetest.Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns := cluster.Namespace(t, "crd")
	t.Cleanup(func() { // the cluster is shared: no meshlens of another test should find these
		if out, err := cluster.Kubectl(context.Background(), "delete", "-n", ns, "rollouts.meshlens.io,alertrules.meshlens.io", "--all", "--wait=false"); err != nil {
			t.Logf("cleanup: %v: %s", err, out)
		}
	})
	for _, c := range []struct {
		example, resource, name string
		status                  map[string]any
		want                    []string // kubectl's header, then the row
	}{
		{"rollout-canary.yaml", "rollouts", "reviews",
			map[string]any{"phase": "progressing", "step": 1, "weights": map[string]any{"stable": 80, "candidate": 20, "matched": true},
				"lastVerdict": map[string]any{"at": "2026-03-01T12:00:00Z", "step": 1, "result": "pass"}},
			[]string{"NAME SERVICE PHASE STEP CANARY % VERDICT AGE", "reviews reviews progressing 1 20 pass"}},
		{"alertrule-error-rate.yaml", "alertrules", "reviews-v3-errors",
			map[string]any{"state": "firing", "activeSince": "2026-03-01T12:00:00Z", "value": 0.31},
			[]string{"NAME METRIC SERVICE STATE AGE", "reviews-v3-errors errorRate reviews firing"}},
	} {
		t.Run(c.resource, func(t *testing.T) {
			objs := deployExampleObjects(t, c.example)
			obj := objs["examples/"+c.example+"#0"]
			obj["metadata"].(map[string]any)["namespace"] = ns
			doc, err := yaml.Marshal(obj)
			if err != nil {
				t.Fatal(err)
			}
			if err := cluster.Apply(ctx, ns, doc); err != nil {
				t.Fatalf("apply examples/%s: %v", c.example, err)
			}
			body, err := json.Marshal(map[string]any{"status": c.status})
			if err != nil {
				t.Fatal(err)
			}
			gvr := schema.GroupVersionResource{Group: "meshlens.io", Version: "v1alpha1", Resource: c.resource}
			if _, err := cluster.Dynamic.Resource(gvr).Namespace(ns).Patch(ctx, c.name, types.MergePatchType, body, metav1.PatchOptions{}, "status"); err != nil {
				t.Fatalf("write the status: %v", err)
			}
			out, err := cluster.Kubectl(ctx, "get", c.resource+".meshlens.io", "-n", ns)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			for i, want := range c.want {
				if i >= len(lines) || !strings.HasPrefix(strings.Join(strings.Fields(lines[i]), " "), want) {
					t.Errorf("kubectl get %s:\n%s\nline %d, want %q", c.resource, out, i+1, want)
				}
			}
			t.Logf("kubectl get %s.meshlens.io:\n%s", c.resource, out)
		})
	}
}
