{{/*
Names. The fullname is the release name when it already contains the chart
name, else <release>-<chart> (as `helm create` does); fullnameOverride wins.
Every cluster-scoped object (ClusterRoles, their bindings, the webhook
configuration) is named after the fullname, so two releases never collide.
*/}}
{{- define "szal.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "szal.fullname" -}}
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

{{- define "szal.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "szal.labels" -}}
helm.sh/chart: {{ include "szal.chart" . }}
{{ include "szal.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: szal
{{- end }}

{{- define "szal.selectorLabels" -}}
app.kubernetes.io/name: {{ include "szal.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "szal.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "szal.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "szal.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "szal.webhookService" -}}
{{- printf "%s-webhook" (include "szal.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "szal.webhookConfiguration" -}}
{{- printf "%s-webhook" (include "szal.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "szal.webhookSecret" -}}
{{- printf "%s-webhook-tls" (include "szal.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "szal.webhookCertManager" -}}
{{- if and .Values.webhook.enabled .Values.webhook.certManager.enabled }}true{{ end }}
{{- end }}

{{/*
The operator's rules in the namespaces it serves: the same list as
manifests/base/rbac/role.yaml (each rule is explained there);
e2e/test_install.py fails when the two differ.
*/}}
{{- define "szal.operatorRules" -}}
- apiGroups: [szal.dev]
  resources: [workflowruns]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [szal.dev]
  resources: [workflowruns/status]
  verbs: [get, patch, update]
- apiGroups: [szal.dev]
  resources: [workflowruns/finalizers]
  verbs: [update]
- apiGroups: [szal.dev]
  resources: [workflows]
  verbs: [get, list, watch]
- apiGroups: [szal.dev]
  resources: [workflows/status]
  verbs: [get, patch]
- apiGroups: [szal.dev]
  resources: [workflowschedules]
  verbs: [get, list, watch]
- apiGroups: [szal.dev]
  resources: [workflowschedules/status]
  verbs: [get, patch]
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, delete]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
{{- if .Values.api.enabled }}
- apiGroups: [""]
  resources: [pods/log]
  verbs: [get]
{{- end }}
{{- end }}
