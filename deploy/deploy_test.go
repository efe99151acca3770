// Package deploy holds Ajil's deployment files; its tests build the
// kustomizations in-process, decode every object strictly into its API type
// and check what an operator relies on.
package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ajil-news/ajil/internal/poll"
	"github.com/ajil-news/ajil/subscribers"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/redis/go-redis/v9"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// kustomization is one an operator applies, with what its build must show.
type kustomization struct {
	name           string
	dir            string
	namespace      string // "" leaves it to kubectl -n
	streamReplicas string // AJIL_STREAM_REPLICAS every ajil container gets
	secrets        bool   // the build carries the base's placeholder Secrets
	pinned         bool   // every image has a fixed tag or a digest
}

// TestKustomizations builds each kustomization once and runs every check
// on the result.
func TestKustomizations(t *testing.T) {
	builds := []kustomization{
		{name: "base", dir: "kubernetes/base", namespace: "", streamReplicas: "1", secrets: true, pinned: false},
		{name: "production", dir: "kubernetes/overlays/production", namespace: "ajil", streamReplicas: "3", secrets: false, pinned: true},
	}
	checks := []struct {
		name  string
		check func(*testing.T, kustomization, *manifest)
	}{
		{"namespace", checkNamespace},
		{"containers", checkContainers},
		{"shutdown fits grace period", checkShutdownFitsGracePeriod},
		{"stream replicas", checkStreamReplicas},
		{"selectors", checkSelectors},
		{"network policies admit ajil", checkNetworkPoliciesAdmitAjil},
		{"references", checkReferences},
		{"placeholder api keys refused", checkPlaceholderKeysRefused},
		{"connection settings", checkConnectionSettings},
		{"images pinned", checkImagesPinned},
		{"nats cluster", checkNATSCluster},
		{"redis", checkRedis},
		{"alert rules", checkAlertRules},
	}
	for _, b := range builds {
		t.Run(b.name, func(t *testing.T) {
			m := build(t, b.dir)
			for _, c := range checks {
				t.Run(c.name, func(t *testing.T) { c.check(t, b, m) })
			}
		})
	}
}

// The Prometheus Operator kinds, which k8s.io/api lacks, mirrored for the
// fields Ajil uses; decoding strictly into them rejects any other field.
type serviceMonitor struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		Selector  metav1.LabelSelector `json:"selector"`
		Endpoints []struct {
			Port          string `json:"port"`
			Path          string `json:"path"`
			Interval      string `json:"interval"`
			ScrapeTimeout string `json:"scrapeTimeout"`
		} `json:"endpoints"`
	} `json:"spec"`
}

type prometheusRule struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Alert       string            `json:"alert"`
				Expr        string            `json:"expr"`
				For         string            `json:"for"`
				Labels      map[string]string `json:"labels"`
				Annotations map[string]string `json:"annotations"`
			} `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

// newObject returns the type an object of apiVersion/kind decodes into. A
// kind not here fails the test: it would be a kind nobody checked.
func newObject(apiVersionKind string) (any, bool) {
	switch apiVersionKind {
	case "apps/v1/Deployment":
		return new(appsv1.Deployment), true
	case "apps/v1/StatefulSet":
		return new(appsv1.StatefulSet), true
	case "v1/Service":
		return new(corev1.Service), true
	case "v1/ConfigMap":
		return new(corev1.ConfigMap), true
	case "v1/Secret":
		return new(corev1.Secret), true
	case "v1/Namespace":
		return new(corev1.Namespace), true
	case "policy/v1/PodDisruptionBudget":
		return new(policyv1.PodDisruptionBudget), true
	case "networking.k8s.io/v1/NetworkPolicy":
		return new(networkingv1.NetworkPolicy), true
	case "monitoring.coreos.com/v1/ServiceMonitor":
		return new(serviceMonitor), true
	case "monitoring.coreos.com/v1/PrometheusRule":
		return new(prometheusRule), true
	}
	return nil, false
}

// decodeStrict decodes one object as the API server does with strict field
// validation: keys match case-sensitively, and unknown or duplicate fields
// are errors.
func decodeStrict(data []byte) (any, error) {
	var tm metav1.TypeMeta
	if err := json.Unmarshal(data, &tm); err != nil {
		return nil, fmt.Errorf("read apiVersion and kind: %w", err)
	}
	obj, ok := newObject(tm.APIVersion + "/" + tm.Kind)
	if !ok {
		return nil, fmt.Errorf("unexpected kind %s %s", tm.APIVersion, tm.Kind)
	}
	strictErrs, err := kjson.UnmarshalStrict(data, obj)
	if err != nil {
		return nil, fmt.Errorf("decode %s: %w", tm.Kind, err)
	}
	if len(strictErrs) > 0 {
		return nil, fmt.Errorf("decode %s: %w", tm.Kind, errors.Join(strictErrs...))
	}
	return obj, nil
}

// manifest is one kustomize build, decoded.
type manifest struct {
	all             []metav1.Object
	deployments     []*appsv1.Deployment
	statefulSets    []*appsv1.StatefulSet
	services        []*corev1.Service
	configMaps      map[string]*corev1.ConfigMap
	secrets         map[string]*corev1.Secret
	namespaces      []*corev1.Namespace
	pdbs            []*policyv1.PodDisruptionBudget
	networkPolicies []*networkingv1.NetworkPolicy
	serviceMonitors []*serviceMonitor
	rules           []*prometheusRule
}

func build(t *testing.T, dir string) *manifest {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	resources, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	m := &manifest{configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{}}
	for _, r := range resources.Resources() {
		data, err := r.MarshalJSON()
		if err != nil {
			t.Fatalf("%s: %v", r.CurId(), err)
		}
		obj, err := decodeStrict(data)
		if err != nil {
			t.Fatalf("%s: %v", r.CurId(), err)
		}
		switch o := obj.(type) {
		case *appsv1.Deployment:
			m.deployments = append(m.deployments, o)
			m.all = append(m.all, o)
		case *appsv1.StatefulSet:
			m.statefulSets = append(m.statefulSets, o)
			m.all = append(m.all, o)
		case *corev1.Service:
			m.services = append(m.services, o)
			m.all = append(m.all, o)
		case *corev1.ConfigMap:
			m.configMaps[o.Name] = o
			m.all = append(m.all, o)
		case *corev1.Secret:
			m.secrets[o.Name] = o
			m.all = append(m.all, o)
		case *corev1.Namespace:
			m.namespaces = append(m.namespaces, o)
		case *policyv1.PodDisruptionBudget:
			m.pdbs = append(m.pdbs, o)
			m.all = append(m.all, o)
		case *networkingv1.NetworkPolicy:
			m.networkPolicies = append(m.networkPolicies, o)
			m.all = append(m.all, o)
		case *serviceMonitor:
			m.serviceMonitors = append(m.serviceMonitors, o)
			m.all = append(m.all, &o.Metadata)
		case *prometheusRule:
			m.rules = append(m.rules, o)
			m.all = append(m.all, &o.Metadata)
		}
	}
	return m
}

// workload is a Deployment or StatefulSet seen through what the checks need.
type workload struct {
	kind, name string
	replicas   int32
	selector   *metav1.LabelSelector
	pod        corev1.PodTemplateSpec
	// podLabels has the label set of each pod the controller creates:
	// StatefulSet pods also carry their own name.
	podLabels []labels.Set
}

func (m *manifest) workloads() []workload {
	var ws []workload
	for _, d := range m.deployments {
		ws = append(ws, workload{kind: "Deployment", name: d.Name, replicas: replicas(d.Spec.Replicas),
			selector: d.Spec.Selector, pod: d.Spec.Template, podLabels: []labels.Set{d.Spec.Template.Labels}})
	}
	for _, s := range m.statefulSets {
		w := workload{kind: "StatefulSet", name: s.Name, replicas: replicas(s.Spec.Replicas),
			selector: s.Spec.Selector, pod: s.Spec.Template}
		for i := range w.replicas {
			l := labels.Merge(s.Spec.Template.Labels, labels.Set{
				"statefulset.kubernetes.io/pod-name": fmt.Sprintf("%s-%d", s.Name, i),
				"apps.kubernetes.io/pod-index":       strconv.Itoa(int(i)),
			})
			w.podLabels = append(w.podLabels, l)
		}
		ws = append(ws, w)
	}
	return ws
}

func replicas(r *int32) int32 {
	if r == nil {
		return 1
	}
	return *r
}

// selects returns the workloads with at least one pod the selector matches.
func (m *manifest) selects(t *testing.T, sel labels.Selector) []workload {
	t.Helper()
	var hit []workload
	for _, w := range m.workloads() {
		if slices.ContainsFunc(w.podLabels, func(l labels.Set) bool { return sel.Matches(l) }) {
			hit = append(hit, w)
		}
	}
	return hit
}

func selector(t *testing.T, ls *metav1.LabelSelector) labels.Selector {
	t.Helper()
	sel, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		t.Fatalf("selector %v: %v", ls, err)
	}
	return sel
}

// isAjil tells Ajil's own containers from NATS's and Redis's.
func isAjil(w workload) bool { return w.pod.Labels["app.kubernetes.io/name"] == "ajil" }

// env is a container's environment as the kubelet builds it: envFrom
// first, then env. Values from Secrets show as "<secret NAME/KEY>".
func (m *manifest) env(t *testing.T, c corev1.Container) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, from := range c.EnvFrom {
		if from.ConfigMapRef == nil {
			t.Fatalf("container %s: envFrom other than a ConfigMap", c.Name)
		}
		cm, ok := m.configMaps[from.ConfigMapRef.Name]
		if !ok {
			t.Fatalf("container %s: envFrom ConfigMap %q is not in the build", c.Name, from.ConfigMapRef.Name)
		}
		for k, v := range cm.Data {
			env[from.Prefix+k] = v
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			env[e.Name] = fmt.Sprintf("<secret %s/%s>", e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key)
		default:
			env[e.Name] = "<field>"
		}
	}
	return env
}

func TestDecodeRejectsBadManifests(t *testing.T) {
	tests := []struct {
		file string
		want string
	}{
		{file: "unknown-field.yaml", want: `unknown field "spec.replica"`},
		{file: "wrong-case.yaml", want: `unknown field "spec.template.spec.containers[0].Image"`},
		{file: "wrong-type.yaml", want: "cannot unmarshal string"},
		{file: "removed-api.yaml", want: "unexpected kind policy/v1beta1 PodDisruptionBudget"},
		{file: "rule-unknown-field.yaml", want: `unknown field "spec.groups[0].rules[0].expression"`},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			src, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			data, err := yaml.YAMLToJSON(src)
			if err != nil {
				t.Fatal(err)
			}
			_, err = decodeStrict(data)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("decode error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func checkNamespace(t *testing.T, b kustomization, m *manifest) {
	for _, o := range m.all {
		if o.GetNamespace() != b.namespace {
			t.Errorf("%s: namespace %q, want %q", o.GetName(), o.GetNamespace(), b.namespace)
		}
	}
	if b.namespace == "" {
		if len(m.namespaces) != 0 {
			t.Errorf("the base creates Namespaces; overlays own them")
		}
		return
	}
	i := slices.IndexFunc(m.namespaces, func(n *corev1.Namespace) bool { return n.Name == b.namespace })
	if i < 0 {
		t.Fatalf("no Namespace %q in the build", b.namespace)
	}
	if got := m.namespaces[i].Labels["pod-security.kubernetes.io/enforce"]; got != "restricted" {
		t.Errorf("Namespace %s enforces Pod Security %q, want restricted", b.namespace, got)
	}
}

func checkContainers(t *testing.T, b kustomization, m *manifest) {
	ws := m.workloads()
	if len(ws) == 0 {
		t.Fatal("no workloads")
	}
	for _, w := range ws {
		checkPod(t, w)
	}
}

// checkPod checks what the restricted Pod Security Standard requires, and
// the resources, probes and settings every pod of Ajil's has.
func checkPod(t *testing.T, w workload) {
	t.Helper()
	spec := w.pod.Spec
	id := w.kind + " " + w.name
	psc := spec.SecurityContext
	if psc == nil {
		t.Errorf("%s: no pod securityContext", id)
		psc = &corev1.PodSecurityContext{}
	}
	if psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: seccompProfile is not RuntimeDefault", id)
	}
	if spec.HostNetwork || spec.HostPID || spec.HostIPC {
		t.Errorf("%s: shares a host namespace", id)
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Errorf("%s: mounts a service account token it never uses", id)
	}
	if spec.EnableServiceLinks == nil || *spec.EnableServiceLinks {
		t.Errorf("%s: service links put SERVICE_PORT variables (AJIL_NATS_PORT...) in the environment", id)
	}
	for _, v := range spec.Volumes {
		if v.HostPath != nil {
			t.Errorf("%s: hostPath volume %s", id, v.Name)
		}
	}
	if len(spec.Containers) == 0 {
		t.Fatalf("%s: no containers", id)
	}
	for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
		cid := id + " container " + c.Name
		csc := c.SecurityContext
		if csc == nil {
			t.Errorf("%s: no securityContext", cid)
			csc = &corev1.SecurityContext{}
		}
		nonRoot := (psc.RunAsNonRoot != nil && *psc.RunAsNonRoot) || (csc.RunAsNonRoot != nil && *csc.RunAsNonRoot)
		uid := psc.RunAsUser
		if csc.RunAsUser != nil {
			uid = csc.RunAsUser
		}
		if !nonRoot || uid == nil || *uid == 0 {
			t.Errorf("%s: not forced to run as a non-root user (runAsNonRoot and a non-zero runAsUser)", cid)
		}
		if csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation {
			t.Errorf("%s: allowPrivilegeEscalation is not false", cid)
		}
		if csc.Privileged != nil && *csc.Privileged {
			t.Errorf("%s: privileged", cid)
		}
		if csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem {
			t.Errorf("%s: root filesystem is writable", cid)
		}
		if csc.Capabilities == nil || !slices.Equal(csc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(csc.Capabilities.Add) > 0 {
			t.Errorf("%s: capabilities are not exactly drop ALL", cid)
		}
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if q, ok := c.Resources.Requests[r]; !ok || q.IsZero() {
				t.Errorf("%s: no %s request", cid, r)
			}
		}
		if q, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok || q.Cmp(c.Resources.Requests[corev1.ResourceMemory]) < 0 {
			t.Errorf("%s: no memory limit at or above the request", cid)
		}
		if c.LivenessProbe == nil || c.ReadinessProbe == nil {
			t.Errorf("%s: needs both a liveness and a readiness probe", cid)
			continue
		}
		for _, p := range []*corev1.Probe{c.StartupProbe, c.LivenessProbe, c.ReadinessProbe} {
			if p != nil && p.HTTPGet != nil && p.HTTPGet.Port.StrVal != "" &&
				!slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool { return cp.Name == p.HTTPGet.Port.StrVal }) {
				t.Errorf("%s: probe on port %q, which the container does not declare", cid, p.HTTPGet.Port.StrVal)
			}
		}
		if !isAjil(w) {
			continue
		}
		if p := c.LivenessProbe.HTTPGet; p == nil || p.Path != "/healthz" {
			t.Errorf("%s: liveness probe is not GET /healthz", cid)
		}
		if p := c.ReadinessProbe.HTTPGet; p == nil || p.Path != "/readyz" {
			t.Errorf("%s: readiness probe is not GET /readyz", cid)
		}
		if c.Image == "" || len(c.Args) < 2 || c.Args[0] != "serve" || !strings.HasPrefix(c.Args[1], "--roles=") {
			t.Errorf("%s: does not run `ajil serve --roles=...`: %q", cid, c.Args)
		}
	}
}

func checkShutdownFitsGracePeriod(t *testing.T, b kustomization, m *manifest) {
	for _, w := range m.workloads() {
		if !isAjil(w) {
			continue
		}
		for _, c := range w.pod.Spec.Containers {
			timeout, err := time.ParseDuration(m.env(t, c)["AJIL_SHUTDOWN_TIMEOUT"])
			if err != nil {
				t.Fatalf("%s: AJIL_SHUTDOWN_TIMEOUT: %v", w.name, err)
			}
			var preStop time.Duration
			if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
				preStop = time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
			}
			grace := 30 * time.Second // Kubernetes' default
			if g := w.pod.Spec.TerminationGracePeriodSeconds; g != nil {
				grace = time.Duration(*g) * time.Second
			}
			if grace <= preStop+timeout {
				t.Errorf("%s: terminationGracePeriodSeconds %v leaves no room after preStop %v and AJIL_SHUTDOWN_TIMEOUT %v: the drain would be killed",
					w.name, grace, preStop, timeout)
			}
		}
	}
}

func checkStreamReplicas(t *testing.T, b kustomization, m *manifest) {
	nats := m.statefulSet(t, "ajil-nats")
	roles := map[string]bool{}
	for _, w := range m.workloads() {
		if !isAjil(w) {
			continue
		}
		roles[w.pod.Labels["app.kubernetes.io/component"]] = true
		for _, c := range w.pod.Spec.Containers {
			got := m.env(t, c)["AJIL_STREAM_REPLICAS"]
			if got != b.streamReplicas {
				t.Errorf("%s: AJIL_STREAM_REPLICAS=%q, want %q", w.name, got, b.streamReplicas)
			}
			if n, _ := strconv.Atoi(got); int32(n) > replicas(nats.Spec.Replicas) {
				t.Errorf("%s: %d stream replicas on %d NATS servers", w.name, n, replicas(nats.Spec.Replicas))
			}
		}
	}
	if !roles["api"] || !roles["dispatcher"] {
		t.Errorf("roles deployed: %v, want api and dispatcher", roles)
	}
}

func (m *manifest) statefulSet(t *testing.T, name string) *appsv1.StatefulSet {
	t.Helper()
	i := slices.IndexFunc(m.statefulSets, func(s *appsv1.StatefulSet) bool { return s.Name == name })
	if i < 0 {
		t.Fatalf("no StatefulSet %s", name)
	}
	return m.statefulSets[i]
}

func (m *manifest) service(name string) *corev1.Service {
	i := slices.IndexFunc(m.services, func(s *corev1.Service) bool { return s.Name == name })
	if i < 0 {
		return nil
	}
	return m.services[i]
}

func checkSelectors(t *testing.T, b kustomization, m *manifest) {
	for _, w := range m.workloads() {
		if !selector(t, w.selector).Matches(labels.Set(w.pod.Labels)) {
			t.Errorf("%s %s: selector does not match its own pods", w.kind, w.name)
		}
	}
	covered := map[string]bool{}
	for _, pdb := range m.pdbs {
		hit := m.selects(t, selector(t, pdb.Spec.Selector))
		if len(hit) != 1 {
			t.Errorf("PodDisruptionBudget %s selects %d workloads, want 1", pdb.Name, len(hit))
			continue
		}
		covered[hit[0].name] = true
		if hit[0].replicas < 2 {
			t.Errorf("PodDisruptionBudget %s guards %s, which has %d replica", pdb.Name, hit[0].name, hit[0].replicas)
		}
	}
	for _, w := range m.workloads() {
		if !covered[w.name] {
			t.Errorf("%s %s has no PodDisruptionBudget", w.kind, w.name)
		}
	}
	for _, svc := range m.services {
		hit := m.selects(t, labels.SelectorFromSet(svc.Spec.Selector))
		if len(svc.Spec.Selector) == 0 || len(hit) == 0 {
			t.Errorf("Service %s selects no pods", svc.Name)
			continue
		}
		for _, p := range svc.Spec.Ports {
			for _, w := range hit {
				if !hasPort(w.pod.Spec, p.TargetPort.StrVal, p.TargetPort.IntVal) {
					t.Errorf("Service %s port %s targets %s, which %s does not expose", svc.Name, p.Name, p.TargetPort.String(), w.name)
				}
			}
		}
	}
	for _, np := range m.networkPolicies {
		if len(m.selects(t, selector(t, &np.Spec.PodSelector))) == 0 {
			t.Errorf("NetworkPolicy %s guards no pods", np.Name)
		}
		for _, rule := range np.Spec.Ingress {
			for _, peer := range rule.From {
				if peer.PodSelector != nil && len(m.selects(t, selector(t, peer.PodSelector))) == 0 {
					t.Errorf("NetworkPolicy %s admits pods %v, which do not exist", np.Name, peer.PodSelector.MatchLabels)
				}
			}
		}
	}
}

func hasPort(spec corev1.PodSpec, name string, number int32) bool {
	for _, c := range spec.Containers {
		for _, p := range c.Ports {
			if (name != "" && p.Name == name) || (name == "" && p.ContainerPort == number) {
				return true
			}
		}
	}
	return false
}

// checkNetworkPoliciesAdmitAjil checks that the policies guarding NATS and
// Redis let Ajil's pods through on the ports Ajil dials.
func checkNetworkPoliciesAdmitAjil(t *testing.T, _ kustomization, m *manifest) {
	var ajil labels.Set
	for _, w := range m.workloads() {
		if isAjil(w) {
			ajil = w.podLabels[0]
		}
	}
	for _, tt := range []struct {
		workload string
		port     int32
	}{
		{workload: "ajil-nats", port: 4222},
		{workload: "ajil-redis", port: 6379},
	} {
		t.Run(tt.workload, func(t *testing.T) {
			pod := labels.Set(m.statefulSet(t, tt.workload).Spec.Template.Labels)
			admitted := false
			for _, np := range m.networkPolicies {
				if !selector(t, &np.Spec.PodSelector).Matches(pod) {
					continue
				}
				for _, rule := range np.Spec.Ingress {
					fromAjil := len(rule.From) == 0 || slices.ContainsFunc(rule.From, func(p networkingv1.NetworkPolicyPeer) bool {
						return p.PodSelector != nil && p.NamespaceSelector == nil && selector(t, p.PodSelector).Matches(ajil)
					})
					onPort := len(rule.Ports) == 0 || slices.ContainsFunc(rule.Ports, func(p networkingv1.NetworkPolicyPort) bool {
						return p.Port != nil && p.Port.IntVal == tt.port
					})
					admitted = admitted || (fromAjil && onPort)
				}
			}
			if !admitted {
				t.Errorf("no NetworkPolicy admits ajil pods to %s:%d", tt.workload, tt.port)
			}
		})
	}
}

func checkReferences(t *testing.T, b kustomization, m *manifest) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	secretKeys := map[string][]string{} // secret name -> keys the pods read
	for _, w := range m.workloads() {
		spec := w.pod.Spec
		for _, v := range spec.Volumes {
			switch {
			case v.ConfigMap != nil:
				if _, ok := m.configMaps[v.ConfigMap.Name]; !ok {
					t.Errorf("%s: volume %s mounts ConfigMap %q, which is not in the build", w.name, v.Name, v.ConfigMap.Name)
				}
			case v.Secret != nil:
				secretKeys[v.Secret.SecretName] = append(secretKeys[v.Secret.SecretName], mountedKeys(t, m, w, v)...)
			}
		}
		for _, c := range spec.Containers {
			for _, e := range c.Env {
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					ref := e.ValueFrom.SecretKeyRef
					secretKeys[ref.Name] = append(secretKeys[ref.Name], ref.Key)
				}
			}
		}
	}
	if len(secretKeys) == 0 {
		t.Fatal("no pod reads a Secret")
	}
	for name, keys := range secretKeys {
		s, ok := m.secrets[name]
		switch {
		case b.secrets && !ok:
			t.Errorf("Secret %s is read by a pod and missing from the build", name)
		case b.secrets:
			if s.Annotations["ajil/placeholder"] != "true" {
				t.Errorf("Secret %s in the base is not marked ajil/placeholder", name)
			}
			for _, k := range keys {
				if _, ok := s.StringData[k]; !ok {
					t.Errorf("Secret %s has no key %s", name, k)
				}
			}
		case ok:
			t.Errorf("Secret %s is in the build: an apply would overwrite the operator's", name)
		default:
			checkSecretDocumented(t, string(readme), name, keys)
		}
	}
}

// checkPlaceholderKeysRefused checks, with the parser ajil serve uses, that
// the placeholder API keys file is refused: a base applied by mistake
// serves no key that anyone can read in git.
func checkPlaceholderKeysRefused(t *testing.T, _ kustomization, m *manifest) {
	s, ok := m.secrets["ajil-api-keys"]
	if !ok {
		return
	}
	file := filepath.Join(t.TempDir(), "api-keys")
	if err := os.WriteFile(file, []byte(s.StringData["api-keys"]), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := subscribers.LoadKeys(file); err == nil {
		t.Errorf("ajil accepts the placeholder API keys %q", s.StringData["api-keys"])
	}
}

// mountedKeys is the Secret keys a volume exposes as files the container
// is told about (GOOGLE_APPLICATION_CREDENTIALS, AJIL_API_KEYS_FILE).
func mountedKeys(t *testing.T, m *manifest, w workload, v corev1.Volume) []string {
	t.Helper()
	var keys []string
	for _, c := range w.pod.Spec.Containers {
		for _, vm := range c.VolumeMounts {
			if vm.Name != v.Name {
				continue
			}
			for name, val := range m.env(t, c) {
				if rel, ok := strings.CutPrefix(val, vm.MountPath+"/"); ok && (name == "GOOGLE_APPLICATION_CREDENTIALS" || strings.HasPrefix(name, "AJIL_")) {
					keys = append(keys, rel)
				}
			}
		}
	}
	if len(keys) == 0 {
		t.Errorf("%s: Secret volume %s is mounted but no setting points at a file in it", w.name, v.Name)
	}
	return keys
}

// checkSecretDocumented checks that deploy/README.md shows the kubectl
// command that creates the Secret with every key the pods read.
func checkSecretDocumented(t *testing.T, readme, name string, keys []string) {
	t.Helper()
	cmd := regexp.MustCompile(`kubectl [^\n]*create secret generic ` + regexp.QuoteMeta(name) + `\s((?:[^\n]*\\\n)*[^\n]*)`).FindString(readme)
	if cmd == "" {
		t.Errorf("README.md does not show how to create Secret %s", name)
		return
	}
	for _, k := range keys {
		if !strings.Contains(cmd, "--from-file="+k+"=") && !strings.Contains(cmd, "--from-literal="+k+"=") {
			t.Errorf("README.md creates Secret %s without key %s:\n%s", name, k, cmd)
		}
	}
}

func checkConnectionSettings(t *testing.T, b kustomization, m *manifest) {
	for _, w := range m.workloads() {
		if !isAjil(w) {
			continue
		}
		env := m.env(t, w.pod.Spec.Containers[0])
		for _, u := range strings.Split(env["AJIL_NATS_URL"], ",") {
			checkServiceURL(t, m, "AJIL_NATS_URL", u)
		}
		if got, want := env["AJIL_REDIS_URL"], "<secret ajil-redis/url>"; got != want {
			t.Errorf("%s: AJIL_REDIS_URL = %q, want it from %s (it holds a password)", w.name, got, want)
		}
	}
	if s, ok := m.secrets["ajil-redis"]; ok {
		checkServiceURL(t, m, "ajil-redis url", s.StringData["url"])
		u, err := url.Parse(s.StringData["url"])
		if err != nil {
			t.Fatal(err)
		}
		if pw, _ := u.User.Password(); pw != s.StringData["password"] {
			t.Errorf("Secret ajil-redis: the password in url is not the password Redis requires")
		}
	}
}

// checkServiceURL checks that a URL's host is a Service of the build that
// serves the URL's port.
func checkServiceURL(t *testing.T, m *manifest, what, raw string) {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		t.Fatalf("%s %q: %v", what, raw, err)
	}
	svc := m.service(host)
	if svc == nil {
		t.Errorf("%s %q: no Service %s", what, raw, host)
		return
	}
	if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return strconv.Itoa(int(p.Port)) == port }) {
		t.Errorf("%s %q: Service %s has no port %s", what, raw, host, port)
	}
}

func checkImagesPinned(t *testing.T, b kustomization, m *manifest) {
	if !b.pinned {
		return
	}
	for _, w := range m.workloads() {
		for _, c := range w.pod.Spec.Containers {
			name, tag, _ := strings.Cut(c.Image[strings.LastIndex(c.Image, "/")+1:], ":")
			if !strings.Contains(c.Image, "@sha256:") && (tag == "" || tag == "latest") {
				t.Errorf("%s: image %q (%s) is not pinned to a tag or digest", w.name, c.Image, name)
			}
		}
	}
}

func checkNATSCluster(t *testing.T, b kustomization, m *manifest) {
	sts := m.statefulSet(t, "ajil-nats")
	spec := sts.Spec.Template.Spec
	c := spec.Containers[0]
	if n := replicas(sts.Spec.Replicas); n != 3 {
		t.Errorf("ajil-nats has %d servers, want 3", n)
	}
	conf := configFile(t, m, spec, "nats-server.conf")
	t.Setenv("SERVER_NAME", sts.Name+"-0")
	opts := &server.Options{}
	if err := opts.ProcessConfigString(conf); err != nil {
		t.Fatalf("nats-server.conf: %v", err)
	}
	checkJetStream(t, opts)
	if opts.ServerName != sts.Name+"-0" {
		t.Errorf("server_name = %q, want the pod name", opts.ServerName)
	}

	headless := m.service(sts.Spec.ServiceName)
	if headless == nil || headless.Spec.ClusterIP != corev1.ClusterIPNone || !headless.Spec.PublishNotReadyAddresses {
		t.Fatalf("StatefulSet serviceName %q is not a headless Service publishing not-ready pods", sts.Spec.ServiceName)
	}
	var want []string
	for i := range replicas(sts.Spec.Replicas) {
		want = append(want, fmt.Sprintf("%s-%d.%s:%d", sts.Name, i, headless.Name, opts.Cluster.Port))
	}
	var got []string
	for _, r := range opts.Routes {
		got = append(got, r.Host)
	}
	if !slices.Equal(got, want) {
		t.Errorf("cluster routes = %v, want one per pod: %v", got, want)
	}
	for _, p := range []struct {
		name string
		port int
	}{{"client", opts.Port}, {"cluster", opts.Cluster.Port}, {"monitor", opts.HTTPPort}} {
		if !slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool { return cp.Name == p.name && int(cp.ContainerPort) == p.port }) {
			t.Errorf("container does not expose %s port %d that nats-server listens on", p.name, p.port)
		}
	}
	if !slices.ContainsFunc(headless.Spec.Ports, func(p corev1.ServicePort) bool { return int(p.Port) == opts.Cluster.Port }) {
		t.Errorf("headless Service %s lacks the cluster port %d", headless.Name, opts.Cluster.Port)
	}

	if !mountedAt(c, opts.StoreDir, "data") {
		t.Errorf("store_dir %s is not on the data volume", opts.StoreDir)
	}
	storage := sts.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests[corev1.ResourceStorage]
	if limit := resource.NewQuantity(opts.JetStreamMaxStore, resource.BinarySI); limit.Cmp(storage) >= 0 {
		t.Errorf("max_file_store %s does not fit the %s volume", limit, &storage)
	}
	if !mountedAt(c, filepath.Dir(opts.PidFile), "") {
		t.Errorf("pid_file %s is not on a mounted volume; the lame-duck preStop needs it", opts.PidFile)
	}
	grace := time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second
	if opts.LameDuckDuration+opts.LameDuckGracePeriod >= grace {
		t.Errorf("lame duck (%v + %v) outlasts the %v termination grace period", opts.LameDuckDuration, opts.LameDuckGracePeriod, grace)
	}
}

// configFile is the file of that name a pod reads from its ConfigMap
// volumes.
func configFile(t *testing.T, m *manifest, spec corev1.PodSpec, name string) string {
	t.Helper()
	for _, v := range spec.Volumes {
		if v.ConfigMap == nil {
			continue
		}
		cm, ok := m.configMaps[v.ConfigMap.Name]
		if !ok {
			t.Fatalf("ConfigMap %s missing", v.ConfigMap.Name)
		}
		if conf, ok := cm.Data[name]; ok {
			return conf
		}
	}
	t.Fatalf("no ConfigMap volume holds %s", name)
	return ""
}

// checkRedis runs the ajil-redis container's start script, with the
// environment the pod gives it, against the real redis-server (its paths
// moved to a temporary directory, on a loopback port) and checks the
// settings the registry's safety rests on.
func checkRedis(t *testing.T, _ kustomization, m *manifest) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		msg := "redis-server not found on PATH; install it with `apt-get install -y redis-server` (./scripts/test does)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	sts := m.statefulSet(t, "ajil-redis")
	spec := sts.Spec.Template.Spec
	c := spec.Containers[0]
	if len(c.Command) != 3 || c.Command[0] != "sh" || c.Command[1] != "-c" {
		t.Fatalf("redis command %q: want a `sh -c` script", c.Command)
	}
	dir := t.TempDir()
	paths := strings.NewReplacer("/etc/redis/", dir+"/etc/", "/run/redis/", dir+"/run/", "/data", dir+"/data")
	for _, d := range []string{"etc", "run", "data"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	conf := paths.Replace(configFile(t, m, spec, "redis.conf")) + fmt.Sprintf("\n# test only: loopback\nbind 127.0.0.1\nport %d\n", port)
	if err := os.WriteFile(filepath.Join(dir, "etc", "redis.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}

	const password = "redis-test-password"
	env := []string{"PATH=" + os.Getenv("PATH")}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env = append(env, e.Name+"="+e.Value)
		case e.ValueFrom.SecretKeyRef != nil:
			env = append(env, e.Name+"="+password)
		case e.ValueFrom.ResourceFieldRef != nil:
			ref := e.ValueFrom.ResourceFieldRef
			q := c.Resources.Limits[corev1.ResourceName(strings.TrimPrefix(ref.Resource, "limits."))]
			env = append(env, fmt.Sprintf("%s=%d", e.Name, q.Value()/ref.Divisor.Value()))
		}
	}
	script := paths.Replace(c.Command[2])

	// A replica: the script up to its exec, which would dial pod 0.
	replica := exec.Command("sh", "-c", strings.Replace(script, "exec redis-server", "exit 0 #", 1))
	replica.Env = append(slices.Clone(env), "HOSTNAME="+sts.Name+"-1")
	if out, err := replica.CombinedOutput(); err != nil {
		t.Fatalf("replica start script: %v\n%s", err, out)
	}
	runtime, err := os.ReadFile(filepath.Join(dir, "run", "runtime.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("replicaof %s-0.%s 6379", sts.Name, sts.Spec.ServiceName); !strings.Contains(string(runtime), want) {
		t.Errorf("pod 1's runtime.conf lacks %q:\n%s", want, runtime)
	}

	// The primary, for real.
	primary := exec.Command("sh", "-c", script)
	primary.Env = append(env, "HOSTNAME="+sts.Name+"-0")
	var log bytes.Buffer
	primary.Stdout, primary.Stderr = &log, &log
	if err := primary.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- primary.Wait() }()
	t.Cleanup(func() {
		primary.Process.Kill()
		<-exited
	})
	client := redis.NewClient(&redis.Options{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Password: password, MaxRetries: -1})
	defer client.Close()
	ctx := t.Context()
	poll.Until(t, 10*time.Second, func() error {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("redis-server exited: %v\n%s", err, log.Bytes())
		default:
		}
		return client.Ping(ctx).Err()
	})

	limit := c.Resources.Limits[corev1.ResourceMemory]
	for key, want := range map[string]string{
		"appendonly":       "yes",
		"appendfsync":      "everysec",
		"maxmemory-policy": "noeviction",
		"maxmemory":        strconv.FormatInt(limit.Value()/4*3, 10),
		"dir":              filepath.Join(dir, "data"),
	} {
		got, err := client.ConfigGet(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		if got[key] != want {
			t.Errorf("redis %s = %q, want %q", key, got[key], want)
		}
	}
	anon := redis.NewClient(&redis.Options{Addr: client.Options().Addr, MaxRetries: -1})
	defer anon.Close()
	if err := anon.Ping(ctx).Err(); err == nil {
		t.Error("redis answers without the password")
	}
}

func checkJetStream(t *testing.T, opts *server.Options) {
	t.Helper()
	if !opts.JetStream {
		t.Error("JetStream is off")
	}
	if !opts.SyncAlways {
		t.Error("JetStream does not fsync every write (sync_interval: always)")
	}
	if opts.Cluster.Name == "" || len(opts.Routes) != 3 {
		t.Errorf("cluster %q has %d routes, want 3", opts.Cluster.Name, len(opts.Routes))
	}
}

// mountedAt reports whether dir is at or under a volume mount of c (of the
// named volume, if volume is not empty).
func mountedAt(c corev1.Container, dir, volume string) bool {
	return slices.ContainsFunc(c.VolumeMounts, func(vm corev1.VolumeMount) bool {
		rel, err := filepath.Rel(vm.MountPath, dir)
		return err == nil && !strings.HasPrefix(rel, "..") && (volume == "" || vm.Name == volume)
	})
}

func checkAlertRules(t *testing.T, _ kustomization, m *manifest) {
	// The series Ajil exports; rules may use no other ajil_ name.
	metricNames := []string{
		"ajil_alerts_published_total", "ajil_alerts_suppressed_total", "ajil_alerts_rejected_total",
		"ajil_fcm_sends_total", "ajil_tokens_pruned_total", "ajil_webhook_deliveries_total",
		"ajil_dead_letters_total", "ajil_retries_pending", "ajil_consumer_pending", "ajil_consumer_ack_pending",
		"ajil_redis_errors_total", "ajil_nats_errors_total",
		"ajil_fanout_duration_seconds", "ajil_publish_to_first_send_seconds", "ajil_publish_to_done_seconds",
	}
	// The values of the result label, where there is one.
	results := map[string][]string{
		"ajil_fcm_sends_total":          {"ok", "unregistered", "invalid", "quota", "unavailable", "internal", "auth", "failed", "logged"},
		"ajil_webhook_deliveries_total": {"delivered", "retry", "gone", "permanent", "forbidden"},
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	anchors := headingAnchors(string(readme))
	if len(m.rules) != 1 || len(m.serviceMonitors) != 1 {
		t.Fatalf("%d PrometheusRules and %d ServiceMonitors, want 1 each", len(m.rules), len(m.serviceMonitors))
	}
	job := scrapedService(t, m)
	var podPattern []string

	seen := map[string]bool{}
	series := regexp.MustCompile(`\b(ajil_[a-z_]+?)(_bucket|_sum|_count)?\b(\{[^}]*\})?`)
	matcher := regexp.MustCompile(`(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"`)
	for _, g := range m.rules[0].Spec.Groups {
		for _, r := range g.Rules {
			seen[r.Alert] = true
			if r.Alert == "" || r.Expr == "" {
				t.Errorf("rule %+v: needs alert and expr", r)
				continue
			}
			if _, err := time.ParseDuration(r.For); err != nil {
				t.Errorf("%s: for %q: %v", r.Alert, r.For, err)
			}
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("%s: severity %q, want warning or critical", r.Alert, s)
			}
			for _, a := range []string{"summary", "description", "runbook"} {
				if r.Annotations[a] == "" {
					t.Errorf("%s: no %s annotation", r.Alert, a)
				}
			}
			if _, anchor, _ := strings.Cut(r.Annotations["runbook"], "#"); !anchors[anchor] {
				t.Errorf("%s: runbook %q: README.md has no such section", r.Alert, r.Annotations["runbook"])
			}
			if err := balanced(r.Expr); err != nil {
				t.Errorf("%s: %v", r.Alert, err)
			}
			for _, s := range series.FindAllStringSubmatch(r.Expr, -1) {
				name := s[1]
				if !slices.Contains(metricNames, name) {
					t.Errorf("%s: Ajil exports no metric %s", r.Alert, name)
				}
				for _, lm := range matcher.FindAllStringSubmatch(s[3], -1) {
					if lm[1] == "result" && (lm[2] == "=" || lm[2] == "!=") && !slices.Contains(results[name], lm[3]) {
						t.Errorf("%s: %s has no result %q", r.Alert, name, lm[3])
					}
				}
			}
			for _, lm := range matcher.FindAllStringSubmatch(r.Expr, -1) {
				switch {
				case lm[1] == "job" && lm[3] != job:
					t.Errorf("%s: job %q, but Prometheus names the ajil job after Service %s", r.Alert, lm[3], job)
				case lm[1] == "pod" && lm[2] == "=~":
					podPattern = append(podPattern, lm[3])
				}
			}
		}
	}
	for _, want := range []string{"AjilDeadLettersGrowing", "AjilFCMAuthErrors", "AjilConsumerLagHigh", "AjilNotReady", "AjilWebhookFailures"} {
		if !seen[want] {
			t.Errorf("no alert %s", want)
		}
	}
	// The readiness alert must cover every pod of the build: Prometheus
	// anchors the regexp at both ends.
	for _, p := range podPattern {
		re := regexp.MustCompile("^(?:" + p + ")$")
		for _, w := range m.workloads() {
			if !re.MatchString(w.name + "-0") {
				t.Errorf("pod regexp %q misses the pods of %s", p, w.name)
			}
		}
	}
}

// scrapedService checks that the ServiceMonitor scrapes /metrics on every
// ajil pod and returns the Service it goes through, which is the job label.
func scrapedService(t *testing.T, m *manifest) string {
	t.Helper()
	sm := m.serviceMonitors[0]
	sel := selector(t, &sm.Spec.Selector)
	var hit []*corev1.Service
	for _, svc := range m.services {
		if sel.Matches(labels.Set(svc.Labels)) {
			hit = append(hit, svc)
		}
	}
	if len(hit) != 1 {
		t.Fatalf("ServiceMonitor %s selects %d Services, want 1 (two would scrape each pod twice)", sm.Metadata.Name, len(hit))
	}
	svc := hit[0]
	for _, ep := range sm.Spec.Endpoints {
		if ep.Path != "/metrics" || !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == ep.Port }) {
			t.Errorf("ServiceMonitor endpoint %s%s: want /metrics on a port of Service %s", ep.Port, ep.Path, svc.Name)
		}
	}
	scraped := map[string]bool{}
	for _, w := range m.selects(t, labels.SelectorFromSet(svc.Spec.Selector)) {
		scraped[w.name] = true
	}
	for _, w := range m.workloads() {
		if isAjil(w) && !scraped[w.name] {
			t.Errorf("%s is not scraped", w.name)
		}
	}
	return svc.Name
}

// balanced catches the commonest PromQL typo without a PromQL parser.
func balanced(expr string) error {
	var stack []rune
	pairs := map[rune]rune{')': '(', ']': '[', '}': '{'}
	inString := false
	for _, r := range expr {
		switch {
		case r == '"':
			inString = !inString
		case inString:
		case r == '(' || r == '[' || r == '{':
			stack = append(stack, r)
		case pairs[r] != 0:
			if len(stack) == 0 || stack[len(stack)-1] != pairs[r] {
				return fmt.Errorf("unbalanced %q in %q", r, expr)
			}
			stack = stack[:len(stack)-1]
		}
	}
	if len(stack) > 0 || inString {
		return fmt.Errorf("unclosed brackets or quotes in %q", expr)
	}
	return nil
}

// headingAnchors are the anchors GitHub gives the Markdown headings.
func headingAnchors(md string) map[string]bool {
	anchors := map[string]bool{}
	drop := regexp.MustCompile(`[^\p{L}\p{N} _-]`)
	for _, line := range strings.Split(md, "\n") {
		if h, ok := strings.CutPrefix(line, "#"); ok {
			h = strings.TrimSpace(strings.TrimLeft(h, "#"))
			anchors[strings.ReplaceAll(drop.ReplaceAllString(strings.ToLower(h), ""), " ", "-")] = true
		}
	}
	return anchors
}

// compose mirrors the compose.yaml fields Ajil uses; decoding strictly into
// it catches a misspelt key as `docker compose` would.
type compose struct {
	Name     string                    `json:"name"`
	Services map[string]composeService `json:"services"`
	Volumes  map[string]*struct{}      `json:"volumes"`
}

type composeService struct {
	Image           string            `json:"image"`
	Build           *composeBuild     `json:"build"`
	Command         []string          `json:"command"`
	Environment     map[string]string `json:"environment"`
	Volumes         []string          `json:"volumes"`
	Ports           []string          `json:"ports"`
	ReadOnly        bool              `json:"read_only"`
	Tmpfs           []string          `json:"tmpfs"`
	StopGracePeriod string            `json:"stop_grace_period"`
	DependsOn       map[string]struct {
		Condition string `json:"condition"`
	} `json:"depends_on"`
	Healthcheck *struct {
		Test        []string `json:"test"`
		Interval    string   `json:"interval"`
		Timeout     string   `json:"timeout"`
		Retries     int      `json:"retries"`
		StartPeriod string   `json:"start_period"`
	} `json:"healthcheck"`
	Restart string `json:"restart"`
}

type composeBuild struct {
	Context    string            `json:"context"`
	Dockerfile string            `json:"dockerfile"`
	Target     string            `json:"target"`
	Args       map[string]string `json:"args"`
}

func TestCompose(t *testing.T) {
	src, err := os.ReadFile("compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	data, err := yaml.YAMLToJSON(src)
	if err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	var c compose
	if strictErrs, err := kjson.UnmarshalStrict(data, &c); err != nil || len(strictErrs) > 0 {
		t.Fatalf("compose.yaml: %v %v", err, strictErrs)
	}

	var nats []string
	for name, s := range c.Services {
		if s.Healthcheck == nil || len(s.Healthcheck.Test) < 2 || s.Healthcheck.Test[0] != "CMD" {
			t.Errorf("service %s: no exec-form health check", name)
		}
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if strings.HasPrefix(src, ".") {
				if _, err := os.Stat(src); err != nil {
					t.Errorf("service %s mounts %s: %v", name, src, err)
				}
			} else if _, ok := c.Volumes[src]; !ok {
				t.Errorf("service %s mounts volume %s, which is not declared", name, src)
			}
		}
		if strings.HasPrefix(s.Image, "nats:") {
			nats = append(nats, name)
		}
	}
	slices.Sort(nats)
	if len(nats) != 3 {
		t.Fatalf("%d nats services (%v), want 3", len(nats), nats)
	}
	var names []string
	for _, name := range nats {
		opts := composeNATS(t, name, c.Services[name])
		checkJetStream(t, opts)
		names = append(names, opts.ServerName)
		var hosts []string
		for _, r := range opts.Routes {
			hosts = append(hosts, r.Hostname())
		}
		if !slices.Equal(hosts, nats) {
			t.Errorf("%s: routes to %v, want the nats services %v", name, hosts, nats)
		}
	}
	if slices.Sort(names); len(slices.Compact(names)) != 3 {
		t.Errorf("server names %v are not distinct", names)
	}

	ajil, ok := c.Services["ajil"]
	if !ok || ajil.Build == nil {
		t.Fatal("no ajil service built from the Dockerfile")
	}
	if len(ajil.Command) == 0 || ajil.Command[0] != "serve" {
		t.Errorf("ajil runs %q, want serve", ajil.Command)
	}
	if _, err := os.Stat(filepath.Join(ajil.Build.Context, ajil.Build.Dockerfile)); err != nil {
		t.Errorf("ajil build: %v", err)
	}
	if stages := dockerStages(t, filepath.Join(ajil.Build.Context, ajil.Build.Dockerfile)); !slices.ContainsFunc(stages, func(s stage) bool { return s.name == ajil.Build.Target }) {
		t.Errorf("ajil build target %q is not a Dockerfile stage", ajil.Build.Target)
	}
	for _, dep := range append(slices.Clone(nats), "redis") {
		if ajil.DependsOn[dep].Condition != "service_healthy" {
			t.Errorf("ajil does not wait for %s to be healthy", dep)
		}
	}
	var urlHosts []string
	for _, u := range strings.Split(ajil.Environment["AJIL_NATS_URL"], ",") {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatalf("AJIL_NATS_URL: %v", err)
		}
		urlHosts = append(urlHosts, pu.Hostname())
	}
	if !slices.Equal(urlHosts, nats) {
		t.Errorf("AJIL_NATS_URL names %v, want %v", urlHosts, nats)
	}
	keysFile := ""
	for _, v := range ajil.Volumes {
		if src, dst, _ := strings.Cut(v, ":"); strings.TrimSuffix(dst, ":ro") == ajil.Environment["AJIL_API_KEYS_FILE"] {
			keysFile = src
		}
	}
	if keys, err := subscribers.LoadKeys(keysFile); err != nil || keys.Len() == 0 {
		t.Errorf("AJIL_API_KEYS_FILE %q, mounted from %q: %v", ajil.Environment["AJIL_API_KEYS_FILE"], keysFile, err)
	}
	if n, _ := strconv.Atoi(ajil.Environment["AJIL_STREAM_REPLICAS"]); n < 1 || n > len(nats) {
		t.Errorf("AJIL_STREAM_REPLICAS=%q on %d servers", ajil.Environment["AJIL_STREAM_REPLICAS"], len(nats))
	}
	timeout, err1 := time.ParseDuration(ajil.Environment["AJIL_SHUTDOWN_TIMEOUT"])
	grace, err2 := time.ParseDuration(ajil.StopGracePeriod)
	if err1 != nil || err2 != nil || grace <= timeout {
		t.Errorf("stop_grace_period %q must outlast AJIL_SHUTDOWN_TIMEOUT %q", ajil.StopGracePeriod, ajil.Environment["AJIL_SHUTDOWN_TIMEOUT"])
	}
}

// composeNATS parses the config file a compose nats service mounts, with
// the service's environment.
func composeNATS(t *testing.T, name string, s composeService) *server.Options {
	t.Helper()
	i := slices.Index(s.Command, "--config")
	if i < 0 || i+1 == len(s.Command) {
		t.Fatalf("%s: command %q names no --config file", name, s.Command)
	}
	var conf string
	for _, v := range s.Volumes {
		if src, dst, _ := strings.Cut(v, ":"); dst == s.Command[i+1] || strings.HasPrefix(dst, s.Command[i+1]+":") {
			conf = src
		}
	}
	if conf == "" {
		t.Fatalf("%s: the --config file %s is not mounted from this folder", name, s.Command[i+1])
	}
	for k, v := range s.Environment {
		t.Setenv(k, v)
	}
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatalf("%s: %s: %v", name, conf, err)
	}
	return opts
}

type stage struct {
	from, name, user string
	env, run         []string
}

// dockerStages reads a Dockerfile's stages; enough of the syntax for the
// checks here (continuations, comments, ARG defaults in FROM).
func dockerStages(t *testing.T, path string) []stage {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Comment lines go first, as in Docker: a backslash ending one joins
	// nothing, and comments inside a continued instruction are dropped.
	text := regexp.MustCompile(`(?m)^\s*#.*\n`).ReplaceAllString(string(src), "")
	text = strings.ReplaceAll(text, "\\\n", " ")
	args := map[string]string{}
	var stages []stage
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		rest := strings.Join(f[1:], " ")
		switch strings.ToUpper(f[0]) {
		case "ARG":
			if k, v, ok := strings.Cut(f[1], "="); ok && len(stages) == 0 {
				args[k] = v
			}
		case "FROM":
			f = slices.DeleteFunc(f[1:], func(s string) bool { return strings.HasPrefix(s, "--") })
			s := stage{from: os.Expand(f[0], func(k string) string { return args[k] })}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				s.name = f[2]
			}
			stages = append(stages, s)
		case "USER":
			stages[len(stages)-1].user = rest
		case "ENV":
			stages[len(stages)-1].env = append(stages[len(stages)-1].env, f[1:]...)
		case "RUN":
			stages[len(stages)-1].run = append(stages[len(stages)-1].run, rest)
		}
	}
	return stages
}

func TestDockerfile(t *testing.T) {
	stages := dockerStages(t, "../Dockerfile")
	if len(stages) < 2 {
		t.Fatalf("%d stages, want a builder and a runtime", len(stages))
	}
	gomod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	goVersion := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(string(gomod))
	if goVersion == nil {
		t.Fatal("go.mod has no go directive")
	}
	builder := stages[0]
	if builder.from != "golang:"+goVersion[1] {
		t.Errorf("builder is %s, want golang:%s as go.mod says", builder.from, goVersion[1])
	}
	if !slices.Contains(builder.env, "CGO_ENABLED=0") || !slices.Contains(builder.env, "GOTOOLCHAIN=local") {
		t.Errorf("builder env %v: want CGO_ENABLED=0 (a static binary) and GOTOOLCHAIN=local", builder.env)
	}
	build := regexp.MustCompile(`go build .*-trimpath .*-X main\.version=\S+.* (\./\S+)$`)
	var pkg string
	for _, r := range builder.run {
		if m := build.FindStringSubmatch(r); m != nil {
			pkg = m[1]
		}
	}
	if pkg == "" {
		t.Fatalf("no `go build -trimpath -ldflags ... -X main.version=...` in %q", builder.run)
	}
	mains, _ := filepath.Glob(filepath.Join("..", pkg, "*.go"))
	var version bool
	for _, f := range mains {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		version = version || regexp.MustCompile(`(?m)^var version = `).Match(src)
	}
	if !version {
		t.Errorf("%s declares no `var version`, so -X main.version sets nothing", pkg)
	}
	final := stages[len(stages)-1]
	uid, _, _ := strings.Cut(final.user, ":")
	if n, err := strconv.Atoi(uid); err != nil || n == 0 {
		t.Errorf("final stage (%s) runs as %q, want a numeric non-root USER", final.from, final.user)
	}
}
