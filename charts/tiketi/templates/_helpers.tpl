{{/* ---- names ---------------------------------------------------------------------------------- */}}

{{- define "tiketi.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* "<release>-<chart>", or the release name alone when it already contains the chart name. */}}
{{- define "tiketi.fullname" -}}
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

{{- define "tiketi.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Component object names: "<fullname>-<component>", e.g. tiketi-service, tiketi-operator. */}}
{{- define "tiketi.service.fullname" -}}
{{- printf "%s-service" (include "tiketi.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- define "tiketi.operator.fullname" -}}
{{- printf "%s-operator" (include "tiketi.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- define "tiketi.postgresql.fullname" -}}
{{- printf "%s-postgresql" (include "tiketi.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- define "tiketi.redis.fullname" -}}
{{- printf "%s-redis" (include "tiketi.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tiketi.service.serviceAccountName" -}}
{{- if .Values.service.serviceAccount.create -}}
{{- default (include "tiketi.service.fullname" .) .Values.service.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.service.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "tiketi.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create -}}
{{- default (include "tiketi.operator.fullname" .) .Values.operator.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.operator.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "tiketi.operator.leaseName" -}}
{{- default (include "tiketi.operator.fullname" .) .Values.operator.leaseName -}}
{{- end -}}

{{/* The Secret with JWT_SECRET, DATABASE_URL, REDIS_URL, ADMIN_*: the user's or the chart's. */}}
{{- define "tiketi.secretName" -}}
{{- default (include "tiketi.fullname" .) .Values.secret.existingSecret -}}
{{- end -}}

{{/* ---- labels --------------------------------------------------------------------------------- */}}

{{- define "tiketi.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tiketi.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tiketi.labels" -}}
helm.sh/chart: {{ include "tiketi.chart" . }}
{{ include "tiketi.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tiketi
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels of one component: (dict "ctx" $ "component" "service") */}}
{{- define "tiketi.componentLabels" -}}
{{ include "tiketi.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "tiketi.componentSelectorLabels" -}}
{{ include "tiketi.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* ---- images --------------------------------------------------------------------------------- */}}

{{/* (dict "image" .Values.service.image "ctx" $): repository@digest, else repository:tag (tag defaults to appVersion). */}}
{{- define "tiketi.image" -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag | toString) -}}
{{- end -}}
{{- end -}}

{{/* ---- connection URLs ------------------------------------------------------------------------ */}}

{{- define "tiketi.databaseUrl" -}}
{{- if .Values.devDatabases.enabled -}}
{{- $pg := .Values.devDatabases.postgresql -}}
{{- printf "postgres://%s:%s@%s:5432/%s" (urlquery $pg.username) (urlquery $pg.password) (include "tiketi.postgresql.fullname" .) $pg.database -}}
{{- else -}}
{{- .Values.externalDatabase.url -}}
{{- end -}}
{{- end -}}

{{- define "tiketi.redisUrl" -}}
{{- if .Values.devDatabases.enabled -}}
{{- printf "redis://%s:6379" (include "tiketi.redis.fullname" .) -}}
{{- else -}}
{{- .Values.externalRedis.url -}}
{{- end -}}
{{- end -}}

{{/* Migrations run at service start when asked, and always with the dev databases (see values.yaml). */}}
{{- define "tiketi.migrateOnStart" -}}
{{- if or .Values.service.config.migrateOnStart .Values.devDatabases.enabled -}}true{{- else -}}false{{- end -}}
{{- end -}}

{{/* The hook Job, unless the dev databases are on (they start after pre-install hooks) or no database is
     configured at all (NOTES.txt then says so, instead of a hook that fails after its back-off). */}}
{{- define "tiketi.migrationJobEnabled" -}}
{{- $haveDb := or .Values.secret.existingSecret (include "tiketi.databaseUrl" .) -}}
{{- if and .Values.service.enabled .Values.migrations.job.enabled (not .Values.devDatabases.enabled) $haveDb -}}true{{- end -}}
{{- end -}}

{{/* JWT_SECRET, base64: the given value, else the one already in the release's Secret (installs made
     when the chart still generated one keep it), else empty. Never random: a value made at render time
     changes with every `helm template` (Argo CD, GitOps pipelines), and replicas started from different
     renders would hold different secrets. Empty is fine in dev mode (the service's dev secret) and
     refused by the Secret template otherwise. */}}
{{- define "tiketi.jwtSecretB64" -}}
{{- if .Values.secret.jwtSecret -}}
{{- .Values.secret.jwtSecret | b64enc -}}
{{- else -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "tiketi.fullname" .) -}}
{{- if and $existing $existing.data (hasKey $existing.data "JWT_SECRET") -}}
{{- index $existing.data "JWT_SECRET" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A checksum of everything the chart's Secret holds (the JWT secret included), so pods roll when it
     changes and never run with two secrets. A secret.existingSecret's contents are not known to the chart:
     roll the pods yourself when you change it (e.g. bump service.podAnnotations). */}}
{{- define "tiketi.secretChecksum" -}}
{{- $in := dict "s" .Values.secret "db" (include "tiketi.databaseUrl" .) "redis" (include "tiketi.redisUrl" .) "jwt" (include "tiketi.jwtSecretB64" .) -}}
{{- toJson $in | sha256sum -}}
{{- end -}}

{{/* ---- scheduling ----------------------------------------------------------------------------- */}}

{{/* (dict "ctx" $ "component" "service" "affinity" .Values.service.affinity): the given affinity, else prefer one replica per node. */}}
{{- define "tiketi.affinity" -}}
{{- if .affinity -}}
{{ toYaml .affinity }}
{{- else -}}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "tiketi.componentSelectorLabels" (dict "ctx" .ctx "component" .component) | nindent 12 }}
{{- end -}}
{{- end -}}

{{/* Namespaces the operator reconciles: operator.watchNamespaces, default the release namespace; ["*"] = all. */}}
{{- define "tiketi.operator.watchNamespaces" -}}
{{- $w := .Values.operator.watchNamespaces | default (list .Release.Namespace) }}
{{- if and (has "*" $w) (gt (len $w) 1) }}
{{- fail "operator.watchNamespaces: \"*\" (every namespace) stands alone" }}
{{- end }}
{{- join "," $w }}
{{- end }}

{{/* The Secret key the operator's DATABASE_URL comes from. */}}
{{- define "tiketi.operator.databaseUrlKey" -}}
{{- if .Values.operator.databaseUrlKey }}{{ .Values.operator.databaseUrlKey }}
{{- else if .Values.operator.databaseUrl }}OPERATOR_DATABASE_URL
{{- else }}DATABASE_URL
{{- end }}
{{- end }}

{{/* The operator's rules (a ClusterRole's or each watched namespace's Role): only what the enabled
features use. Context: .Values.operator. */}}
{{- define "tiketi.operator.rules" -}}
# Reconcile source: the controller lists and watches TicketEvents. patch: the finalizer
# (tiketi.io/restore-replicas) that gives the target back when a TicketEvent is deleted mid-sale,
# added and removed with JSON patches of metadata.finalizers only.
- apiGroups: ["tiketi.io"]
  resources: ["ticketevents"]
  verbs: ["get", "list", "watch", "patch"]
# Phase, forecast, desired/ready replicas, conditions: server-side apply of the status subresource.
- apiGroups: ["tiketi.io"]
  resources: ["ticketevents/status"]
  verbs: ["patch"]
# Reads the target's replicas and ready replicas; watches Deployments so a readiness change wakes the
# TicketEvents that target it. The actuator (patch): one merge patch, conditional on the
# resourceVersion read, sets spec.replicas together with the sale's wish annotation
# (wish.tiketi.io/<TicketEvent>), so sales sharing a Deployment decide from one version. RBAC cannot
# narrow it to Deployments named by TicketEvents (resourceNames are static): who may create
# TicketEvents in a watched namespace may scale its Deployments through the operator.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "patch"]
# An HPA or KEDA ScaledObject on the target is detected (reflectors) and reported (TargetConflict).
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list", "watch"{{ if .allowCooperate }}, "patch"{{ end }}]
- apiGroups: ["keda.sh"]
  resources: ["scaledobjects"]
  verbs: ["get", "list", "watch"{{ if .allowCooperate }}, "patch"{{ end }}]
{{- if .leadTimeAuto }}
# operator.leadTimeAuto: `leadTime: auto` measures start-to-Ready of the target's pods (listed by its
# selector, only while replicas start).
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list"]
{{- end }}
# One Kubernetes Event per decision, on the TicketEvent; patch updates a repeated Event's count.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
