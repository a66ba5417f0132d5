{{/* The chart name, or nameOverride. */}}
{{- define "runnerpool-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every object name; cluster-scoped objects (ClusterRole,
ClusterRoleBinding) carry it too, so two releases never collide.
*/}}
{{- define "runnerpool-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "runnerpool-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "runnerpool-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "runnerpool-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "runnerpool-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "runnerpool-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "runnerpool-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "runnerpool-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
The rules the operator needs where RunnerPools live, and nothing more:
- runnerpools: watch, the finalizer (patch), status (server-side apply);
- runnergroups: the same (pools read the group id of their runnerGroupRef);
  runner pods carry no ownerReference to their pool, so no finalizers/update;
- pods and Secrets: watch, create and delete runners, relabel pods (patch),
  tie a runner's Secret to its pod (patch); the credentials Secret is read
  with get;
- events.k8s.io events: kube-rs's Recorder creates them and patches series;
- only with containerModes.kubernetes.enabled: what pools of containerMode
  kubernetes need (below).
*/}}
{{- define "runnerpool-operator.rules" -}}
- apiGroups: ["actions.runnerpool.dev"]
  resources: ["runnerpools"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["actions.runnerpool.dev"]
  resources: ["runnerpools/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["actions.runnerpool.dev"]
  resources: ["runnergroups"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["actions.runnerpool.dev"]
  resources: ["runnergroups/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "create", "delete", "patch"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "delete", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- if .Values.containerModes.kubernetes.enabled }}
# containerMode kubernetes: each such pool gets a ServiceAccount, Role and
# RoleBinding (server-side apply: create + patch), which the operator deletes
# once the pool's last runner is gone (delete). The API server lets the
# operator grant only rights it holds itself (no escalate/bind), so it also
# holds the rights of that Role: pods (above), secrets (above), and these.
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["create", "patch", "delete"]
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["create", "patch", "delete"]
- apiGroups: [""]
  resources: ["pods/exec"]
  verbs: ["get", "create"]
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "create", "delete"]
# The ConfigMaps of the pools' job pod templates (spec.jobPodTemplate):
# applied before runners that mount them, listed and deleted once unused.
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["list", "create", "patch", "delete"]
{{- end }}
{{- end }}
