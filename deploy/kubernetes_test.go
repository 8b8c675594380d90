package deploy_test

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// The Kubernetes objects the manifests hold, as far as they use them.
// Documents are decoded strictly into these types (no k8s.io/api: it would
// bring a dozen modules for a test), so a field these types do not have —
// a misspelt one, or one added without this test — fails: the API server
// would refuse or ignore it.

type meta struct {
	Name        string            `yaml:"name"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

// intOrString is a Kubernetes IntOrString (a port number or name, a count
// or a percentage).
type intOrString string

func (v *intOrString) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a number or a string", n.Line)
	}
	*v = intOrString(n.Value)
	return nil
}

type labelSelector struct {
	MatchLabels map[string]string `yaml:"matchLabels"`
}

// selects reports whether s selects pods labelled labels.
func (s labelSelector) selects(labels map[string]string) bool {
	for k, v := range s.MatchLabels {
		if labels[k] != v {
			return false
		}
	}
	return len(s.MatchLabels) > 0
}

type probe struct {
	HTTPGet *struct {
		Path string      `yaml:"path"`
		Port intOrString `yaml:"port"`
	} `yaml:"httpGet"`
	InitialDelaySeconds int `yaml:"initialDelaySeconds"`
	PeriodSeconds       int `yaml:"periodSeconds"`
	TimeoutSeconds      int `yaml:"timeoutSeconds"`
	FailureThreshold    int `yaml:"failureThreshold"`
}

type containerPort struct {
	Name          string `yaml:"name"`
	ContainerPort int    `yaml:"containerPort"`
	Protocol      string `yaml:"protocol"`
}

type container struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	EnvFrom []struct {
		ConfigMapRef *struct {
			Name string `yaml:"name"`
		} `yaml:"configMapRef"`
		SecretRef *struct {
			Name string `yaml:"name"`
		} `yaml:"secretRef"`
	} `yaml:"envFrom"`
	Env []struct {
		Name  string `yaml:"name"`
		Value string `yaml:"value"`
	} `yaml:"env"`
	Ports          []containerPort `yaml:"ports"`
	ReadinessProbe *probe          `yaml:"readinessProbe"`
	LivenessProbe  *probe          `yaml:"livenessProbe"`
	Resources      struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext struct {
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
		Capabilities             struct {
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
	} `yaml:"securityContext"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
}

// port resolves a probe's or Service's target port (a number or a port
// name) to a number of c; 0 if it names no port of c.
func (c container) port(p intOrString) int {
	if n, err := strconv.Atoi(string(p)); err == nil {
		return n
	}
	for _, cp := range c.Ports {
		if cp.Name == string(p) {
			return cp.ContainerPort
		}
	}
	return 0
}

type deployment struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   meta   `yaml:"metadata"`
	Spec       struct {
		Replicas *int          `yaml:"replicas"`
		Selector labelSelector `yaml:"selector"`
		Strategy struct {
			Type          string `yaml:"type"`
			RollingUpdate struct {
				MaxSurge       intOrString `yaml:"maxSurge"`
				MaxUnavailable intOrString `yaml:"maxUnavailable"`
			} `yaml:"rollingUpdate"`
		} `yaml:"strategy"`
		Template struct {
			Metadata meta `yaml:"metadata"`
			Spec     struct {
				TerminationGracePeriodSeconds *int  `yaml:"terminationGracePeriodSeconds"`
				AutomountServiceAccountToken  *bool `yaml:"automountServiceAccountToken"`
				SecurityContext               struct {
					RunAsNonRoot   *bool `yaml:"runAsNonRoot"`
					RunAsUser      *int  `yaml:"runAsUser"`
					RunAsGroup     *int  `yaml:"runAsGroup"`
					FSGroup        *int  `yaml:"fsGroup"`
					SeccompProfile struct {
						Type string `yaml:"type"`
					} `yaml:"seccompProfile"`
				} `yaml:"securityContext"`
				Containers []container `yaml:"containers"`
				Volumes    []struct {
					Name     string `yaml:"name"`
					EmptyDir *struct {
						SizeLimit string `yaml:"sizeLimit"`
					} `yaml:"emptyDir"`
					PersistentVolumeClaim *struct {
						ClaimName string `yaml:"claimName"`
					} `yaml:"persistentVolumeClaim"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type service struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   meta   `yaml:"metadata"`
	Spec       struct {
		Type     string            `yaml:"type"`
		Selector map[string]string `yaml:"selector"`
		Ports    []struct {
			Name       string      `yaml:"name"`
			Port       int         `yaml:"port"`
			TargetPort intOrString `yaml:"targetPort"`
			Protocol   string      `yaml:"protocol"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

type autoscaler struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   meta   `yaml:"metadata"`
	Spec       struct {
		ScaleTargetRef struct {
			APIVersion string `yaml:"apiVersion"`
			Kind       string `yaml:"kind"`
			Name       string `yaml:"name"`
		} `yaml:"scaleTargetRef"`
		MinReplicas int      `yaml:"minReplicas"`
		MaxReplicas int      `yaml:"maxReplicas"`
		Metrics     []metric `yaml:"metrics"`
	} `yaml:"spec"`
}

type metric struct {
	Type     string `yaml:"type"`
	Resource struct {
		Name   string `yaml:"name"`
		Target struct {
			Type               string `yaml:"type"`
			AverageUtilization int    `yaml:"averageUtilization"`
		} `yaml:"target"`
	} `yaml:"resource"`
}

type disruptionBudget struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   meta   `yaml:"metadata"`
	Spec       struct {
		MinAvailable   *intOrString  `yaml:"minAvailable"`
		MaxUnavailable *intOrString  `yaml:"maxUnavailable"`
		Selector       labelSelector `yaml:"selector"`
	} `yaml:"spec"`
}

type configMap struct {
	APIVersion string            `yaml:"apiVersion"`
	Kind       string            `yaml:"kind"`
	Metadata   meta              `yaml:"metadata"`
	Data       map[string]string `yaml:"data"`
}

type secret struct {
	APIVersion string            `yaml:"apiVersion"`
	Kind       string            `yaml:"kind"`
	Metadata   meta              `yaml:"metadata"`
	Type       string            `yaml:"type"`
	StringData map[string]string `yaml:"stringData"`
}

// manifests are the objects of every file of kubernetes/, by name.
type manifests struct {
	deployments map[string]deployment
	services    map[string]service
	autoscalers map[string]autoscaler
	budgets     map[string]disruptionBudget
	configMaps  map[string]configMap
	secrets     map[string]secret
}

// kind is a kind of object the manifests may hold: its API version, and
// where a document of it is decoded to.
type kind struct {
	apiVersion string
	decode     func(doc, name string) error
}

// kinds are the kinds m holds.
func (m *manifests) kinds() map[string]kind {
	return map[string]kind{
		"Deployment":              {"apps/v1", func(d, n string) error { return decodeInto(d, n, m.deployments) }},
		"Service":                 {"v1", func(d, n string) error { return decodeInto(d, n, m.services) }},
		"HorizontalPodAutoscaler": {"autoscaling/v2", func(d, n string) error { return decodeInto(d, n, m.autoscalers) }},
		"PodDisruptionBudget":     {"policy/v1", func(d, n string) error { return decodeInto(d, n, m.budgets) }},
		"ConfigMap":               {"v1", func(d, n string) error { return decodeInto(d, n, m.configMaps) }},
		"Secret":                  {"v1", func(d, n string) error { return decodeInto(d, n, m.secrets) }},
	}
}

func newManifests() *manifests {
	return &manifests{deployments: map[string]deployment{}, services: map[string]service{},
		autoscalers: map[string]autoscaler{}, budgets: map[string]disruptionBudget{},
		configMaps: map[string]configMap{}, secrets: map[string]secret{}}
}

// readManifests decodes every document of every .yaml file in dir.
func readManifests(dir string) (*manifests, error) {
	m := newManifests()
	files, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("no manifests in %s (%v)", dir, err)
	}
	var errs []error
	for _, path := range files {
		if filepath.Ext(path) != ".yaml" {
			errs = append(errs, fmt.Errorf("%s: not a .yaml file (kubectl apply -f %s/ would try it)", path, dir))
			continue
		}
		data, err := os.ReadFile(path)
		if err == nil {
			err = m.add(data)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", path, err))
		}
	}
	return m, errors.Join(errs...)
}

// add decodes the documents of one file into m. Documents are split at
// "---" lines and decoded one by one, padded so that the YAML errors give
// the file's line numbers.
func (m *manifests) add(data []byte) error {
	lines := strings.SplitAfter(string(data), "\n")
	start := 0
	for i := 0; i <= len(lines); i++ {
		if i < len(lines) && strings.TrimRight(lines[i], "\r\n") != "---" {
			continue
		}
		doc := strings.Repeat("\n", start) + strings.Join(lines[start:i], "")
		if err := m.addDocument(doc, start+1); err != nil {
			return err
		}
		start = i + 1
	}
	return nil
}

// addDocument decodes one document (that starts at line) into m, strictly.
func (m *manifests) addDocument(doc string, line int) error {
	var head struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
		Metadata   meta   `yaml:"metadata"`
	}
	var node yaml.Node
	if err := yaml.Unmarshal([]byte(doc), &node); err != nil {
		return err
	}
	if node.Kind == 0 {
		return nil // comments only
	}
	if err := node.Decode(&head); err != nil {
		return err
	}
	k, ok := m.kinds()[head.Kind]
	if !ok || head.APIVersion != k.apiVersion {
		return fmt.Errorf("line %d: %s %s: want a Deployment, Service, HorizontalPodAutoscaler, PodDisruptionBudget, ConfigMap or Secret of its current API version", line, head.APIVersion, head.Kind)
	}
	if head.Metadata.Name == "" {
		return fmt.Errorf("line %d: %s without metadata.name", line, head.Kind)
	}
	if err := k.decode(doc, head.Metadata.Name); err != nil {
		return fmt.Errorf("%s %s: %w", head.Kind, head.Metadata.Name, err)
	}
	return nil
}

// decodeInto decodes doc strictly (every field known, one document) into
// into[name].
func decodeInto[T any](doc, name string, into map[string]T) error {
	if _, dup := into[name]; dup {
		return errors.New("defined twice")
	}
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	var v T
	if err := dec.Decode(&v); err != nil {
		return err
	}
	if err := dec.Decode(new(yaml.Node)); !errors.Is(err, io.EOF) {
		return fmt.Errorf("more than one document without a --- line between them (%v)", err)
	}
	into[name] = v
	return nil
}

// TestKubernetes: a Deployment per role running `jobpixel serve -roles
// ROLE` with flags and environment that exist, configured from the
// ConfigMap and Secret, with the real Kafka cluster; probes on the ops
// listener (/readyz, /healthz), which listens on the pod's address and no
// Service exposes; non-root, a read-only root file system, resources;
// ingest's data directory and spool on a volume; a grace period longer
// than the shutdown timeout and a drain delay where traffic comes in;
// Services for ingest and api only, an HPA for ingest, a
// PodDisruptionBudget per Deployment.
func TestKubernetes(t *testing.T) {
	isolateEnv(t)
	m, err := readManifests("kubernetes")
	if err != nil {
		t.Fatal(err)
	}
	ports := map[string]listeners{} // by Deployment, of those whose configuration is known
	for _, role := range roles {
		name := "jobpixel-" + role
		d, ok := m.deployments[name]
		if !ok {
			t.Errorf("no Deployment %s for the role %s", name, role)
			continue
		}
		p, err := m.checkDeployment(d, role)
		if err != nil {
			t.Errorf("Deployment %s: %v", name, err)
		}
		if p.ops != 0 {
			ports[name] = p
		}
	}
	if len(m.deployments) != len(roles) {
		t.Errorf("%d Deployments (%v), want one per role %v", len(m.deployments), slices.Sorted(maps.Keys(m.deployments)), roles)
	}

	exposed := map[string]bool{}
	for name, s := range m.services {
		if err := m.checkService(s, ports, exposed); err != nil {
			t.Errorf("Service %s: %v", name, err)
		}
	}
	if want := map[string]bool{"jobpixel-ingest": true, "jobpixel-api": true}; !maps.Equal(exposed, want) {
		t.Errorf("Services expose %v, want the ingest and api Deployments only", slices.Sorted(maps.Keys(exposed)))
	}

	scaled := map[string]bool{}
	for name, h := range m.autoscalers {
		ref := h.Spec.ScaleTargetRef
		cpu := slices.ContainsFunc(h.Spec.Metrics, func(mt metric) bool {
			return mt.Type == "Resource" && mt.Resource.Name == "cpu" && mt.Resource.Target.AverageUtilization > 0
		})
		_, exists := m.deployments[ref.Name]
		switch {
		case ref.APIVersion != "apps/v1" || ref.Kind != "Deployment" || !exists:
			t.Errorf("HorizontalPodAutoscaler %s scales %s %s %s, which is no Deployment here", name, ref.APIVersion, ref.Kind, ref.Name)
		case !cpu:
			t.Errorf("HorizontalPodAutoscaler %s: no CPU utilisation target", name)
		case h.Spec.MinReplicas < 2 || h.Spec.MaxReplicas < h.Spec.MinReplicas:
			t.Errorf("HorizontalPodAutoscaler %s: replicas %d to %d, want at least 2 (with one, a node drain or a crash stops ingest)", name, h.Spec.MinReplicas, h.Spec.MaxReplicas)
		}
		scaled[ref.Name] = true
	}
	if !scaled["jobpixel-ingest"] || len(scaled) != 1 {
		t.Errorf("HorizontalPodAutoscalers scale %v, want the ingest Deployment", slices.Sorted(maps.Keys(scaled)))
	}
	if d, ok := m.deployments["jobpixel-ingest"]; ok && d.Spec.Replicas != nil {
		t.Error("Deployment jobpixel-ingest sets replicas: each kubectl apply would reset what the HorizontalPodAutoscaler chose")
	}

	budgeted := map[string]int{}
	for name, b := range m.budgets {
		if (b.Spec.MinAvailable == nil) == (b.Spec.MaxUnavailable == nil) {
			t.Errorf("PodDisruptionBudget %s: want one of minAvailable and maxUnavailable", name)
		}
		n := 0
		for dname, d := range m.deployments {
			if b.Spec.Selector.selects(d.Spec.Template.Metadata.Labels) {
				budgeted[dname]++
				n++
			}
		}
		if n != 1 {
			t.Errorf("PodDisruptionBudget %s selects the pods of %d Deployments, want one", name, n)
		}
	}
	for name := range m.deployments {
		if budgeted[name] != 1 {
			t.Errorf("Deployment %s has %d PodDisruptionBudgets, want one", name, budgeted[name])
		}
	}
}

// listeners are the ports a pod listens on: the ops listener, and the
// ingest or api listener (0 for the other roles).
type listeners struct{ ops, public int }

// checkDeployment checks the Deployment of role and returns its ports.
func (m *manifests) checkDeployment(d deployment, role string) (listeners, error) {
	var errs []error
	pod := d.Spec.Template.Spec
	if !d.Spec.Selector.selects(d.Spec.Template.Metadata.Labels) {
		errs = append(errs, fmt.Errorf("selector %v does not select its own pods %v", d.Spec.Selector.MatchLabels, d.Spec.Template.Metadata.Labels))
	}
	if len(pod.Containers) != 1 {
		return listeners{}, errors.Join(append(errs, fmt.Errorf("%d containers, want one", len(pod.Containers)))...)
	}
	c := pod.Containers[0]
	if len(c.Command) != 1 || filepath.Base(c.Command[0]) != "jobpixel" {
		errs = append(errs, fmt.Errorf("command %q, want the jobpixel binary", c.Command))
	}
	env, err := m.environment(c)
	if err != nil {
		return listeners{}, errors.Join(append(errs, err)...)
	}
	cfg, err := configure(env, c.Args)
	if err != nil {
		return listeners{}, errors.Join(append(errs, err)...)
	}
	errs = append(errs, checkRole(cfg, role))

	host, ops, err := port(cfg.OpsAddr)
	if err != nil || host != "" {
		errs = append(errs, fmt.Errorf("-ops.addr %q: want :PORT, the pod's address, for the kubelet's probes (%v)", cfg.OpsAddr, err))
	}
	listen := 0
	switch role {
	case "ingest":
		_, listen, err = port(cfg.IngestAddr)
	case "api":
		_, listen, err = port(cfg.APIAddr)
	}
	errs = append(errs, err)
	for _, p := range []int{ops, listen} {
		if p != 0 && !slices.ContainsFunc(c.Ports, func(cp containerPort) bool { return cp.ContainerPort == p }) {
			errs = append(errs, fmt.Errorf("no container port %d, where it listens", p))
		}
	}
	for _, pr := range []struct {
		what, path string
		p          *probe
	}{{"readinessProbe", "/readyz", c.ReadinessProbe}, {"livenessProbe", "/healthz", c.LivenessProbe}} {
		switch {
		case pr.p == nil || pr.p.HTTPGet == nil:
			errs = append(errs, fmt.Errorf("no %s httpGet", pr.what))
		case pr.p.HTTPGet.Path != pr.path || c.port(pr.p.HTTPGet.Port) != ops:
			errs = append(errs, fmt.Errorf("%s asks %s on port %s, want %s on the ops port %d", pr.what, pr.p.HTTPGet.Path, pr.p.HTTPGet.Port, pr.path, ops))
		}
	}

	grace := pod.TerminationGracePeriodSeconds
	if grace == nil || time.Duration(*grace)*time.Second <= cfg.ShutdownTimeout {
		errs = append(errs, fmt.Errorf("terminationGracePeriodSeconds %v is not longer than -shutdown-timeout %s: the kubelet would kill a clean shutdown", deref(grace), cfg.ShutdownTimeout))
	}
	if (role == "ingest" || role == "api") && cfg.DrainDelay <= 0 {
		errs = append(errs, errors.New("no -shutdown.drain-delay: the pod would stop taking requests before its endpoint is removed"))
	}
	if cfg.DrainDelay >= cfg.ShutdownTimeout {
		errs = append(errs, fmt.Errorf("-shutdown.drain-delay %s leaves nothing of -shutdown-timeout %s", cfg.DrainDelay, cfg.ShutdownTimeout))
	}

	if sc := pod.SecurityContext; sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 {
		errs = append(errs, errors.New("pod securityContext: want runAsNonRoot and a runAsUser other than 0"))
	}
	if sc := c.SecurityContext; sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		errs = append(errs, errors.New("container securityContext: want readOnlyRootFilesystem, no allowPrivilegeEscalation, capabilities drop ALL"))
	}
	r := c.Resources
	if r.Requests["cpu"] == "" || r.Requests["memory"] == "" || r.Limits["memory"] == "" {
		errs = append(errs, fmt.Errorf("resources %+v: want cpu and memory requests and a memory limit", r))
	}

	if role == "ingest" {
		for _, path := range ingestState(cfg) {
			ok := false
			for _, vm := range c.VolumeMounts {
				for _, v := range pod.Volumes {
					if v.Name == vm.Name && (v.EmptyDir != nil || v.PersistentVolumeClaim != nil) && within(path, vm.MountPath) {
						ok = true
					}
				}
			}
			if !ok {
				errs = append(errs, fmt.Errorf("%s is on no emptyDir or persistentVolumeClaim mount: the root file system is read-only", path))
			}
		}
	}
	return listeners{ops, listen}, errors.Join(errs...)
}

func deref(p *int) any {
	if p == nil {
		return "(unset)"
	}
	return *p
}

// environment is what the container's environment holds: its envFrom
// ConfigMaps and Secrets (which must be in the manifests), then its env.
func (m *manifests) environment(c container) (map[string]string, error) {
	env := map[string]string{}
	for _, from := range c.EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			cm, ok := m.configMaps[from.ConfigMapRef.Name]
			if !ok {
				return nil, fmt.Errorf("envFrom: no ConfigMap %s", from.ConfigMapRef.Name)
			}
			maps.Copy(env, cm.Data)
		case from.SecretRef != nil:
			s, ok := m.secrets[from.SecretRef.Name]
			if !ok {
				return nil, fmt.Errorf("envFrom: no Secret %s", from.SecretRef.Name)
			}
			maps.Copy(env, s.StringData)
		}
	}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	return env, nil
}

// checkService checks that s selects the pods of one Deployment and
// targets its ingest or api listener, never its ops port; it adds that
// Deployment to exposed.
func (m *manifests) checkService(s service, ports map[string]listeners, exposed map[string]bool) error {
	var errs []error
	var target []string
	for name, d := range m.deployments {
		if (labelSelector{MatchLabels: s.Spec.Selector}).selects(d.Spec.Template.Metadata.Labels) {
			target = append(target, name)
		}
	}
	if len(target) != 1 {
		return fmt.Errorf("selects the pods of %v, want one Deployment", target)
	}
	exposed[target[0]] = true
	d, lp := m.deployments[target[0]], ports[target[0]]
	if lp.ops == 0 {
		return nil // the Deployment's own error says why its ports are unknown
	}
	if len(d.Spec.Template.Spec.Containers) != 1 || len(s.Spec.Ports) == 0 {
		return errors.New("no port, or a Deployment without its one container")
	}
	c := d.Spec.Template.Spec.Containers[0]
	for _, p := range s.Spec.Ports {
		switch tp := c.port(p.TargetPort); {
		case tp == lp.ops || p.Port == lp.ops:
			errs = append(errs, fmt.Errorf("port %s exposes the ops port %d: keep /metrics, /readyz and pprof private", p.Name, lp.ops))
		case tp == 0 || tp != lp.public:
			errs = append(errs, fmt.Errorf("port %s targets %s, not the port %s listens on for the public (%d)", p.Name, p.TargetPort, target[0], lp.public))
		}
	}
	return errors.Join(errs...)
}
