{{/*
Names. With the release called "tote" every object has the name config/default gives it (tote-controller, tote-agent,
...); another release name prefixes them with it, so two releases never share a cluster-scoped name.
*/}}
{{- define "tote.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tote.controllerName" -}}{{ include "tote.fullname" . }}-controller{{- end -}}
{{- define "tote.agentName" -}}{{ include "tote.fullname" . }}-agent{{- end -}}

{{/* Labels every object carries: the component's name (what selectors use) and Helm's bookkeeping. */}}
{{- define "tote.labels" -}}
app.kubernetes.io/name: {{ .name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
app.kubernetes.io/part-of: tote
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{- define "tote.controllerLabels" -}}
{{ include "tote.labels" (dict "root" . "name" (include "tote.controllerName" .) "component" "controller") }}
{{- end -}}
{{- define "tote.agentLabels" -}}
{{ include "tote.labels" (dict "root" . "name" (include "tote.agentName" .) "component" "agent") }}
{{- end -}}
{{- define "tote.commonLabels" -}}
{{ include "tote.labels" (dict "root" . "name" "tote") }}
{{- end -}}

{{/* What selectors match: the name and the release, so two releases' pods never mix. */}}
{{- define "tote.controllerSelector" -}}
app.kubernetes.io/name: {{ include "tote.controllerName" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
{{- define "tote.agentSelector" -}}
app.kubernetes.io/name: {{ include "tote.agentName" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The image: a digest wins over the tag; the tag defaults to v<appVersion>, never latest. */}}
{{- define "tote.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default (printf "v%s" .Chart.AppVersion) }}
{{- end -}}
{{- end -}}

{{- define "tote.serviceAccount" -}}
system:serviceaccount:{{ .Release.Namespace }}:{{ include "tote.agentName" . }}
{{- end -}}
