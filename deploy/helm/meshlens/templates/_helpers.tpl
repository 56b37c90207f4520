{{/* Names: FULLNAME is the release name, or RELEASE-meshlens when the release name does not contain "meshlens". */}}
{{- define "meshlens.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "meshlens.fullname" -}}
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

{{- define "meshlens.clickhouse" -}}
{{- printf "%s-clickhouse" (include "meshlens.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "meshlens.meshConfig" -}}
{{- printf "%s-mesh-config" (include "meshlens.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "meshlens.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "meshlens.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret with the API tokens, or "" when meshlens makes its own. */}}
{{- define "meshlens.tokensSecret" -}}
{{- if .Values.tokens.existingSecret }}
{{- .Values.tokens.existingSecret }}
{{- else if .Values.tokens.create }}
{{- printf "%s-tokens" (include "meshlens.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "meshlens.clickhouseDSN" -}}
{{- if .Values.clickhouse.dsn }}
{{- .Values.clickhouse.dsn }}
{{- else if .Values.clickhouse.enabled }}
{{- printf "clickhouse://%s.%s.svc:9000/meshlens" (include "meshlens.clickhouse" .) .Release.Namespace }}
{{- else }}
{{- fail "clickhouse.dsn is required when clickhouse.enabled is false" }}
{{- end }}
{{- end }}

{{- define "meshlens.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "meshlens.labels" -}}
helm.sh/chart: {{ include "meshlens.chart" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: meshlens
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
{{- end }}

{{- define "meshlens.selectorLabels" -}}
app.kubernetes.io/name: {{ include "meshlens.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "meshlens.clickhouseSelectorLabels" -}}
app.kubernetes.io/name: clickhouse
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}
