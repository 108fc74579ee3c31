{{/* Labels every object carries. */}}
{{- define "cairn.labels" -}}
app.kubernetes.io/name: cairn
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: cairn-{{ .Chart.Version }}
{{- end }}

{{/* The manager's API address, for every daemon and the CSI plugin. */}}
{{- define "cairn.managerURL" -}}
http://{{ .Release.Name }}-manager.{{ .Release.Namespace }}.svc:{{ .Values.manager.port }}
{{- end }}

{{/* The image of every Cairn container. */}}
{{- define "cairn.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end }}
