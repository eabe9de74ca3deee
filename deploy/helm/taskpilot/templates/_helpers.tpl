{{/* Names and labels. */}}
{{- define "taskpilot.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "taskpilot.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The name of one service's objects: (dict "ctx" $ "name" "ingest") */}}
{{- define "taskpilot.componentName" -}}
{{- printf "%s-%s" (include "taskpilot.fullname" .ctx | trunc 50 | trimSuffix "-") .name -}}
{{- end -}}

{{- define "taskpilot.selectorLabels" -}}
app.kubernetes.io/name: {{ include "taskpilot.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{- define "taskpilot.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "taskpilot.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: taskpilot
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
{{- end -}}

{{- define "taskpilot.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "taskpilot.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "taskpilot.image" -}}
{{- $img := .Values.image -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository (default .Chart.AppVersion $img.tag) -}}
{{- end -}}
{{- end -}}

{{/*
Deep merge where the override wins, including false, 0 and "" (sprig's merge and
mergeOverwrite treat those as empty and would keep the default): (dict "base" m "over" m).
*/}}
{{- define "taskpilot.deepMerge" -}}
{{- $out := deepCopy .base -}}
{{- range $key, $value := .over -}}
{{- if and (kindIs "map" $value) (kindIs "map" (get $out $key)) -}}
{{- $_ := set $out $key (include "taskpilot.deepMerge" (dict "base" (get $out $key) "over" $value) | fromJson) -}}
{{- else -}}
{{- $_ := set $out $key $value -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* Every enabled service with the defaults merged in, as JSON: name -> settings. */}}
{{- define "taskpilot.services" -}}
{{- $out := dict -}}
{{- range $name, $cfg := .Values.services -}}
{{- $cfg = $cfg | default dict -}}
{{- if ne (toString (get $cfg "enabled")) "false" -}}
{{- $_ := set $out $name (include "taskpilot.deepMerge" (dict "base" $.Values.defaults "over" $cfg) | fromJson) -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* The consumers KEDA scales a service on. */}}
{{- define "taskpilot.scaledConsumers" -}}
{{- $out := list -}}
{{- range .consumers -}}
{{- if ne (toString (get . "scale")) "false" -}}
{{- $out = append $out . -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* One NetworkPolicy peer: (dict "ctx" $ "target" .Values.nats.networkPolicy) */}}
{{- define "taskpilot.peer" -}}
- podSelector:
    matchLabels:
      {{- toYaml .target.podLabels | nindent 6 }}
  {{- if .target.namespace }}
  namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {{ .target.namespace }}
  {{- end }}
{{- end -}}
