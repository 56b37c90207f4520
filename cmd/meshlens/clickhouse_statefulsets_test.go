package main

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/meshlens/meshlens/internal/kubetest"
)

const clickhouseStatefulSets = "../../deploy/clickhouse/statefulsets.yaml"

// chClusterXML is what the test reads of the servers' cluster.xml.
type chClusterXML struct {
	Clusters struct {
		Meshlens struct {
			Shards []struct {
				InternalReplication bool `xml:"internal_replication"`
				Replicas            []struct {
					Host string `xml:"host"`
					Port int    `xml:"port"`
				} `xml:"replica"`
			} `xml:"shard"`
		} `xml:"meshlens"`
	} `xml:"remote_servers"`
	ZooKeeper []struct {
		Host string `xml:"host"`
		Port int    `xml:"port"`
	} `xml:"zookeeper>node"`
	DDL    string `xml:"distributed_ddl>path"`
	Macros struct {
		Shard struct {
			FromEnv string `xml:"from_env,attr"`
		} `xml:"shard"`
		Replica struct {
			FromEnv string `xml:"from_env,attr"`
		} `xml:"replica"`
	} `xml:"macros"`
}

type chUserXML struct {
	Profile struct {
		LoadBalancing string `xml:"load_balancing"`
	} `xml:"profiles>meshlens"`
	User struct {
		Password struct {
			FromEnv string `xml:"from_env,attr"`
		} `xml:"password"`
		Profile string `xml:"profile"`
	} `xml:"users>meshlens"`
}

// chManifest is deploy/clickhouse/statefulsets.yaml, decoded.
type chManifest struct {
	text     string
	sets     map[string]*appsv1.StatefulSet
	services map[string]*corev1.Service
	configs  map[string]*corev1.ConfigMap
	kinds    []string // KIND/NAME, in order
}

func readCHManifest(t *testing.T) *chManifest {
	t.Helper()
	data, err := os.ReadFile(clickhouseStatefulSets)
	if err != nil {
		t.Fatal(err)
	}
	m := &chManifest{text: string(data), sets: map[string]*appsv1.StatefulSet{}, services: map[string]*corev1.Service{}, configs: map[string]*corev1.ConfigMap{}}
	for i, doc := range strings.Split(string(data), "\n---\n") {
		js, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			t.Fatalf("%s document %d: %v", clickhouseStatefulSets, i+1, err)
		}
		var head struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(js, &head); err != nil || head.Kind == "" {
			t.Fatalf("%s document %d: no kind (%v)", clickhouseStatefulSets, i+1, err)
		}
		if head.Metadata.Namespace != "clickhouse" {
			t.Errorf("%s %s: namespace %q, want clickhouse", head.Kind, head.Metadata.Name, head.Metadata.Namespace)
		}
		m.kinds = append(m.kinds, head.Kind+"/"+head.Metadata.Name)
		var into any
		switch head.Kind {
		case "StatefulSet":
			s := &appsv1.StatefulSet{}
			m.sets[head.Metadata.Name], into = s, s
		case "Service":
			s := &corev1.Service{}
			m.services[head.Metadata.Name], into = s, s
		case "ConfigMap":
			c := &corev1.ConfigMap{}
			m.configs[head.Metadata.Name], into = c, c
		default:
			continue
		}
		dec := json.NewDecoder(strings.NewReader(string(js)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(into); err != nil {
			t.Fatalf("%s %s: %v", head.Kind, head.Metadata.Name, err)
		}
	}
	return m
}

// podHosts are the stable DNS names of a StatefulSet's pods under its
// governing Service, checked to be headless and to select them.
func (m *chManifest) podHosts(t *testing.T, s *appsv1.StatefulSet) []string {
	t.Helper()
	svc := m.services[s.Spec.ServiceName]
	if svc == nil || svc.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Fatalf("StatefulSet %s: serviceName %q is not a headless Service of the file", s.Name, s.Spec.ServiceName)
	}
	for k, v := range svc.Spec.Selector {
		if s.Spec.Template.Labels[k] != v {
			t.Errorf("Service %s selects %s=%s, which the pods of %s lack", svc.Name, k, v, s.Name)
		}
	}
	for k, v := range s.Spec.Selector.MatchLabels {
		if s.Spec.Template.Labels[k] != v {
			t.Errorf("StatefulSet %s: selector %s=%s does not match its pod template", s.Name, k, v)
		}
	}
	var hosts []string
	for i := range int(*s.Spec.Replicas) {
		hosts = append(hosts, fmt.Sprintf("%s-%d.%s.%s.svc.cluster.local", s.Name, i, svc.Name, s.Namespace))
	}
	return hosts
}

func containerPort(t *testing.T, c corev1.Container, name string) int {
	t.Helper()
	for _, p := range c.Ports {
		if p.Name == name {
			return int(p.ContainerPort)
		}
	}
	t.Fatalf("container %s has no port %s", c.Name, name)
	return 0
}

func envOf(c corev1.Container, name string) *corev1.EnvVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}

// The plain-StatefulSet ClickHouse cluster agrees with itself as the
// servers will read it: remote_servers' cluster meshlens is 2 shards × 2
// replicas, and its hosts are exactly the pods of the two shard
// StatefulSets (each shard's hosts the pods of the StatefulSet whose SHARD
// it is) by their names under a headless Service that selects them, on
// their native port; ZooKeeper's nodes are the ZooKeeper StatefulSet's
// pods on its client port, and its ensemble (ZOO_SERVERS) names them all;
// the macros come from SHARD and the pod's own name; every server mounts
// both config files of the ConfigMap; meshlens' user has load_balancing
// in_order and its password from the Secret; the --clickhouse of the
// file's header names every server. Then the file is applied to a real
// API server (server-side dry run), which validates every object.
func TestClickHouseStatefulSetsManifestIsAConsistentTwoByTwoCluster(t *testing.T) {
	m := readCHManifest(t)
	cm := m.configs["clickhouse-config"]
	if cm == nil {
		t.Fatal("no ConfigMap clickhouse-config")
	}
	var cfg chClusterXML
	if err := xml.Unmarshal([]byte(cm.Data["cluster.xml"]), &cfg); err != nil {
		t.Fatalf("cluster.xml: %v", err)
	}
	var users chUserXML
	if err := xml.Unmarshal([]byte(cm.Data["meshlens-user.xml"]), &users); err != nil {
		t.Fatalf("meshlens-user.xml: %v", err)
	}

	// The ClickHouse StatefulSets, by the shard they say they are.
	byShard := map[int]*appsv1.StatefulSet{}
	for _, s := range m.sets {
		if s.Spec.Template.Labels["app.kubernetes.io/name"] != "clickhouse" {
			continue
		}
		c := s.Spec.Template.Spec.Containers[0]
		sh := envOf(c, "SHARD")
		if sh == nil {
			t.Fatalf("StatefulSet %s: no SHARD", s.Name)
		}
		n, err := strconv.Atoi(sh.Value)
		if err != nil || byShard[n] != nil {
			t.Fatalf("StatefulSet %s: SHARD %q is not a shard number of its own", s.Name, sh.Value)
		}
		byShard[n] = s
		if r := envOf(c, "REPLICA"); r == nil || r.ValueFrom == nil || r.ValueFrom.FieldRef == nil || r.ValueFrom.FieldRef.FieldPath != "metadata.name" {
			t.Errorf("StatefulSet %s: REPLICA is not the pod's name", s.Name)
		}
		if p := envOf(c, users.User.Password.FromEnv); p == nil || p.ValueFrom == nil || p.ValueFrom.SecretKeyRef == nil ||
			p.ValueFrom.SecretKeyRef.Name != "meshlens-clickhouse" || p.ValueFrom.SecretKeyRef.Key != "password" {
			t.Errorf("StatefulSet %s: %s (meshlens' password) is not the Secret meshlens-clickhouse's key password", s.Name, users.User.Password.FromEnv)
		}
		mounts := map[string]string{}
		for _, vm := range c.VolumeMounts {
			mounts[vm.MountPath] = vm.SubPath
		}
		for path, key := range map[string]string{"/etc/clickhouse-server/config.d/cluster.xml": "cluster.xml",
			"/etc/clickhouse-server/users.d/meshlens-user.xml": "meshlens-user.xml"} {
			if mounts[path] != key || cm.Data[key] == "" {
				t.Errorf("StatefulSet %s: %s is not the ConfigMap's %s", s.Name, path, key)
			}
		}
	}
	shards := cfg.Clusters.Meshlens.Shards
	if len(shards) != 2 || len(byShard) != 2 {
		t.Fatalf("remote_servers meshlens has %d shards and the file %d shard StatefulSets; want 2 and 2", len(shards), len(byShard))
	}
	var every []string
	for i, sh := range shards {
		s := byShard[i+1]
		if s == nil {
			t.Fatalf("shard %d of remote_servers has no StatefulSet with SHARD %d", i+1, i+1)
		}
		want := m.podHosts(t, s)
		native := containerPort(t, s.Spec.Template.Spec.Containers[0], "native")
		var got []string
		for _, r := range sh.Replicas {
			got = append(got, r.Host)
			if r.Port != native {
				t.Errorf("shard %d: %s port %d, the pods' native port is %d", i+1, r.Host, r.Port, native)
			}
		}
		if len(got) != 2 || !slices.Equal(got, want) {
			t.Errorf("shard %d replicas %v, want the pods of %s: %v", i+1, got, s.Name, want)
		}
		if !sh.InternalReplication {
			t.Errorf("shard %d: internal_replication must be true with ReplicatedMergeTree", i+1)
		}
		every = append(every, want...)
	}
	if cfg.Macros.Shard.FromEnv != "SHARD" || cfg.Macros.Replica.FromEnv != "REPLICA" || cfg.DDL == "" {
		t.Errorf("macros from %q and %q, distributed_ddl %q", cfg.Macros.Shard.FromEnv, cfg.Macros.Replica.FromEnv, cfg.DDL)
	}
	if users.Profile.LoadBalancing != "in_order" || users.User.Profile != "meshlens" {
		t.Errorf("meshlens' user: profile %q with load_balancing %q; want meshlens with in_order", users.User.Profile, users.Profile.LoadBalancing)
	}

	zk := m.sets["zookeeper"]
	if zk == nil {
		t.Fatal("no StatefulSet zookeeper")
	}
	zkHosts := m.podHosts(t, zk)
	zc := zk.Spec.Template.Spec.Containers[0]
	client := containerPort(t, zc, "client")
	var got []string
	for _, n := range cfg.ZooKeeper {
		got = append(got, n.Host)
		if n.Port != client {
			t.Errorf("zookeeper node %s port %d, the pods' client port is %d", n.Host, n.Port, client)
		}
	}
	if !slices.Equal(got, zkHosts) || len(got) != 3 {
		t.Errorf("zookeeper nodes %v, want the 3 pods %v", got, zkHosts)
	}
	servers := envOf(zc, "ZOO_SERVERS")
	for i, h := range zkHosts {
		want := fmt.Sprintf("server.%d=%s:%d:%d;%d", i+1, h, containerPort(t, zc, "follower"), containerPort(t, zc, "election"), client)
		if servers == nil || !strings.Contains(servers.Value, want) {
			t.Errorf("ZOO_SERVERS lacks %s", want)
		}
	}

	// The header's --clickhouse names every server on its native port (by
	// its short .svc name), and --clickhouse-cluster the remote_servers entry.
	dsn := regexp.MustCompile(`--clickhouse clickhouse://[^@]+@(\S+)/meshlens`).FindStringSubmatch(m.text)
	if dsn == nil || !strings.Contains(m.text, "--clickhouse-cluster meshlens") {
		t.Fatal("the header does not give --clickhouse and --clickhouse-cluster meshlens")
	}
	var named []string
	for _, hp := range strings.Split(dsn[1], ",") {
		named = append(named, strings.TrimSuffix(hp, ":9000")+".cluster.local")
	}
	slices.Sort(named)
	slices.Sort(every)
	if !slices.Equal(named, every) {
		t.Errorf("--clickhouse names %v, want every server %v", named, every)
	}

	c := kubetest.Shared(t)
	ensureNamespaces(t, c, "clickhouse")
	out, err := c.Kubectl(context.Background(), "apply", "--dry-run=server", "-f", filepath.Clean(clickhouseStatefulSets))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range m.kinds {
		kind, name, _ := strings.Cut(k, "/")
		if !strings.Contains(out, strings.ToLower(kind)+"/"+name+" created (server dry run)") &&
			!strings.Contains(out, "/"+name+" created (server dry run)") {
			t.Errorf("kubectl apply --dry-run=server did not create %s:\n%s", k, out)
		}
	}
	t.Logf("kubectl apply --dry-run=server:\n%s", out)
}
