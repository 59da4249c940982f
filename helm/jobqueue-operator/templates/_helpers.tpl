{{/*
The chart name: the `app.kubernetes.io/name` label and the base of the full name.
Truncated to 63 characters because some Kubernetes name fields are limited to this.
*/}}
{{- define "jobqueue-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name, prefix of every resource name: `<release>-<chart>`, or the release name alone
when it already contains the chart name. Truncated to 63 characters (DNS label limit).
*/}}
{{- define "jobqueue-operator.fullname" -}}
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

{{/*
Chart name and version, for the `helm.sh/chart` label (`+` is not allowed in label values).
*/}}
{{- define "jobqueue-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every resource. `app.kubernetes.io/part-of: jobqueue` groups the whole product
(the dev pod runner, hack/podrunner.py, selects the pods it runs by it).
*/}}
{{- define "jobqueue-operator.labels" -}}
helm.sh/chart: {{ include "jobqueue-operator.chart" . }}
{{ include "jobqueue-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: jobqueue
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector labels: the immutable subset used by the Deployment's selector and the Services.
*/}}
{{- define "jobqueue-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "jobqueue-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The operator's ServiceAccount name.
*/}}
{{- define "jobqueue-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "jobqueue-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The operator image: `repository@digest` when a digest is given, else `repository:tag`.
*/}}
{{- define "jobqueue-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
"true" when the operator watches every namespace (cluster-wide RBAC), "" otherwise.
*/}}
{{- define "jobqueue-operator.clusterWide" -}}
{{- if not .Values.watchNamespaces }}true{{ end }}
{{- end }}

{{/*
Name of the Secret holding the default Redis URL: the user's existing Secret, or the one the
chart creates from `redis.url` (also the name to create by hand when neither is set).
*/}}
{{- define "jobqueue-operator.redisSecretName" -}}
{{- if and .Values.redis.url .Values.redis.existingSecret }}
{{- fail "set redis.url or redis.existingSecret, not both" }}
{{- end }}
{{- if and .Values.redis.bundled (or .Values.redis.url .Values.redis.existingSecret) }}
{{- fail "redis.bundled runs a Redis of the release and points the operator at it: leave redis.url and redis.existingSecret empty (or set redis.bundled=false to use your own Redis)" }}
{{- end }}
{{- default (printf "%s-redis" (include "jobqueue-operator.fullname" .)) .Values.redis.existingSecret }}
{{- end }}

{{/*
Name of the bundled Redis's Deployment and Service (redis.bundled): `<fullname>-redis`.
*/}}
{{- define "jobqueue-operator.bundledRedisName" -}}
{{- printf "%s-redis" (include "jobqueue-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The bundled Redis's password: the one in the release's Redis Secret if it exists (an upgrade
keeps it, and with it the data of the running Redis and the URLs the operator handed out),
else a new random one. `helm template` (no cluster) renders a new one each time.
*/}}
{{- define "jobqueue-operator.bundledRedisPassword" -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "jobqueue-operator.redisSecretName" .) }}
{{- if and $existing $existing.data (hasKey $existing.data "password") }}
{{- index $existing.data "password" | b64dec }}
{{- else }}
{{- randAlphaNum 32 }}
{{- end }}
{{- end }}

{{/*
Operator replicas: more than one only with leader election (two operators without it would
both act on every object).
*/}}
{{- define "jobqueue-operator.replicas" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicaCount > 1 needs leaderElection.enabled: without it every replica would act (set replicaCount: 1 or enable leader election)" }}
{{- end }}
{{- int .Values.replicaCount }}
{{- end }}

{{/*
Name of the leader Lease (in the release namespace).
*/}}
{{- define "jobqueue-operator.leaseName" -}}
{{- include "jobqueue-operator.fullname" . }}
{{- end }}

{{/*
Affinity of the operator pods: the user's `affinity`, else (with more than one replica) the
`podAntiAffinity` preset spreading them over nodes, so that a node loss takes at most one.
*/}}
{{- define "jobqueue-operator.affinity" -}}
{{- if .Values.affinity }}
{{- toYaml .Values.affinity }}
{{- else if and (gt (int .Values.replicaCount) 1) (ne .Values.podAntiAffinity "none") }}
{{- $term := dict "topologyKey" "kubernetes.io/hostname" "labelSelector" (dict "matchLabels" (merge (dict "app.kubernetes.io/component" "operator") (include "jobqueue-operator.selectorLabels" . | fromYaml))) }}
podAntiAffinity:
{{- if eq .Values.podAntiAffinity "hard" }}
  requiredDuringSchedulingIgnoredDuringExecution:
    {{- toYaml (list $term) | nindent 4 }}
{{- else }}
  preferredDuringSchedulingIgnoredDuringExecution:
    {{- toYaml (list (dict "weight" 100 "podAffinityTerm" $term)) | nindent 4 }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The user's topologySpreadConstraints, each without a `labelSelector` given the operator pods'
own (a constraint selecting nothing would spread nothing).
*/}}
{{- define "jobqueue-operator.topologySpreadConstraints" -}}
{{- $selector := dict "matchLabels" (merge (dict "app.kubernetes.io/component" "operator") (include "jobqueue-operator.selectorLabels" . | fromYaml)) }}
{{- $out := list }}
{{- range .Values.topologySpreadConstraints }}
{{- /* not `merge`: it is deep, and would add our labels to the user's own selector */}}
{{- $out = append $out (ternary . (set (deepCopy .) "labelSelector" $selector) (hasKey . "labelSelector")) }}
{{- end }}
{{- with $out }}
{{- toYaml . }}
{{- end }}
{{- end }}

{{/*
The operator's environment: the ONLY place values become JOBQUEUE_* variables (the operator
reads them in jobqueue_operator/settings.py).
*/}}
{{- define "jobqueue-operator.env" -}}
{{- /* extraEnv may not repeat a variable the chart sets: the API server would refuse the
Deployment with "duplicate entries for key", naming neither the value nor the fix */}}
{{- $byChart := dict "JOBQUEUE_NAMESPACES" "watchNamespaces" "JOBQUEUE_REDIS_URL" "redis.url or redis.existingSecret"
  "JOBQUEUE_METRICS_PORT" "operator.metricsPort" "JOBQUEUE_HEALTH_PORT" "operator.healthPort"
  "JOBQUEUE_LOG_LEVEL" "operator.logLevel" "JOBQUEUE_LOG_FORMAT" "operator.logFormat"
  "JOBQUEUE_PRIORITY_CLASS_PREFIX" "priorityClasses.namePrefix" "JOBQUEUE_WORKER_IMAGE_PULL_POLICY" "operator.workerImagePullPolicy"
  "JOBQUEUE_RESYNC_SECONDS" "operator.resyncSeconds" "JOBQUEUE_REDIS_TIMEOUT_SECONDS" "operator.redisTimeoutSeconds"
  "JOBQUEUE_POLL_INTERVAL" "autoscaler.pollInterval" "JOBQUEUE_WORKER_BUDGET" "autoscaler.workerBudget"
  "JOBQUEUE_REDIS_ISOLATION" "redis.isolation" "JOBQUEUE_REDIS_ALLOWED_HOSTS" "redis.allowedHosts"
  "JOBQUEUE_LEADER_LEASE" "leaderElection.enabled" "JOBQUEUE_LEADER_LEASE_SECONDS" "leaderElection.leaseDurationSeconds"
  "JOBQUEUE_LEADER_RENEW_DEADLINE_SECONDS" "leaderElection.renewDeadlineSeconds"
  "JOBQUEUE_LEADER_RETRY_PERIOD_SECONDS" "leaderElection.retryPeriodSeconds" "JOBQUEUE_SHARDS" "autoscaler.shards"
  "POD_NAME" "(the pod's own name)" "POD_NAMESPACE" "(the pod's own namespace)" }}
{{- range .Values.operator.extraEnv }}
{{- if hasKey $byChart .name }}
{{- fail (printf "operator.extraEnv: %s is set by the chart; set the value %s instead" .name (get $byChart .name)) }}
{{- end }}
{{- end -}}
- name: JOBQUEUE_NAMESPACES
  value: {{ join "," .Values.watchNamespaces | quote }}
- name: JOBQUEUE_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "jobqueue-operator.redisSecretName" . }}
      key: {{ ternary .Values.redis.existingSecretKey "url" (ne .Values.redis.existingSecret "") }}
      {{- if not (or .Values.redis.url .Values.redis.existingSecret .Values.redis.bundled) }}
      # no Redis configured yet: the operator starts without a default Redis until this
      # Secret exists (then restart it)
      optional: true
      {{- end }}
- name: JOBQUEUE_REDIS_ISOLATION
  value: {{ .Values.redis.isolation | quote }}
{{- with .Values.redis.allowedHosts }}
- name: JOBQUEUE_REDIS_ALLOWED_HOSTS
  value: {{ join "," . | quote }}
{{- end }}
- name: JOBQUEUE_METRICS_PORT
  value: {{ .Values.operator.metricsPort | quote }}
- name: JOBQUEUE_HEALTH_PORT
  value: {{ .Values.operator.healthPort | quote }}
- name: JOBQUEUE_LOG_LEVEL
  value: {{ .Values.operator.logLevel | quote }}
- name: JOBQUEUE_LOG_FORMAT
  value: {{ .Values.operator.logFormat | quote }}
- name: JOBQUEUE_PRIORITY_CLASS_PREFIX
  value: {{ ternary .Values.priorityClasses.namePrefix "" .Values.priorityClasses.enabled | quote }}
{{- with .Values.operator.workerImagePullPolicy }}
- name: JOBQUEUE_WORKER_IMAGE_PULL_POLICY
  value: {{ . | quote }}
{{- end }}
- name: JOBQUEUE_RESYNC_SECONDS
  value: {{ .Values.operator.resyncSeconds | quote }}
- name: JOBQUEUE_REDIS_TIMEOUT_SECONDS
  value: {{ .Values.operator.redisTimeoutSeconds | quote }}
- name: JOBQUEUE_POLL_INTERVAL
  value: {{ .Values.autoscaler.pollInterval | quote }}
{{- /* null (or absent): no budget. Not `with`: a budget of 0 is a budget. int64: YAML numbers
reach templates as float64, which would print 1000000 as "1e+06". */}}
{{- if not (kindIs "invalid" .Values.autoscaler.workerBudget) }}
- name: JOBQUEUE_WORKER_BUDGET
  value: {{ .Values.autoscaler.workerBudget | int64 | quote }}
{{- end }}
{{- if .Values.leaderElection.enabled }}
- name: JOBQUEUE_LEADER_LEASE
  value: {{ include "jobqueue-operator.leaseName" . | quote }}
- name: JOBQUEUE_LEADER_LEASE_SECONDS
  value: {{ .Values.leaderElection.leaseDurationSeconds | int64 | quote }}
- name: JOBQUEUE_LEADER_RENEW_DEADLINE_SECONDS
  value: {{ .Values.leaderElection.renewDeadlineSeconds | quote }}
- name: JOBQUEUE_LEADER_RETRY_PERIOD_SECONDS
  value: {{ .Values.leaderElection.retryPeriodSeconds | quote }}
{{- end }}
{{- if .Values.autoscaler.shards }}
{{- if not .Values.leaderElection.enabled }}
{{- fail "autoscaler.shards needs leaderElection.enabled: the shards are Leases beside the leader's" }}
{{- end }}
{{- if not (kindIs "invalid" .Values.autoscaler.workerBudget) }}
{{- fail "autoscaler.shards cannot be used with autoscaler.workerBudget: a budget is dealt out over all queues at once, which no replica sees when they are sharded" }}
{{- end }}
- name: JOBQUEUE_SHARDS
  value: {{ .Values.autoscaler.shards | int64 | quote }}
{{- end }}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
{{- with .Values.operator.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
What the operator may do in the namespaces it watches (a Role per namespace, or the
ClusterRole when it watches all). Each rule says why; docs/install.md lists them too.
*/}}
{{- define "jobqueue-operator.rbac.namespacedRules" -}}
# the custom resources: kopf watches them and patches its last-handled spec (an annotation)
# onto them; the operator reads one by name (a RecurringJob's JobQueue)
- apiGroups: [jobqueue.glec.io]
  resources: [jobqueues, recurringjobs]
  verbs: [get, list, watch, patch]
# status: replicas, depth, conditions (shown by kubectl get jq)
- apiGroups: [jobqueue.glec.io]
  resources: [jobqueues/status, recurringjobs/status]
  verbs: [patch]
# owner references with blockOwnerDeletion on the Deployments/CronJobs it creates: clusters that
# enable the OwnerReferencesPermissionEnforcement admission plugin (OpenShift does) require this
- apiGroups: [jobqueue.glec.io]
  resources: [jobqueues/finalizers, recurringjobs/finalizers]
  verbs: [update]
# the worker Deployment of each JobQueue: watched, applied (server-side apply creates and
# patches it), deleted when its queue is another JobQueue's; delete is also what setting its
# ownerReferences asks for under OwnerReferencesPermissionEnforcement
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, delete]
# the autoscaler sets replicas through the scale subresource (a merge patch)
- apiGroups: [apps]
  resources: [deployments/scale]
  verbs: [patch]
# the CronJob of each RecurringJob: watched (its last tick), applied, suspended while its
# JobQueue is missing; delete only for setting its ownerReferences (as for Deployments)
- apiGroups: [batch]
  resources: [cronjobs]
  verbs: [get, list, watch, create, patch, delete]
# worker pods: notice vanished pods (lost-job recovery), set pod-deletion-cost annotations
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch, patch]
# events on JobQueues and RecurringJobs (the operator posts core/v1 Events, each a new one)
- apiGroups: [""]
  resources: [events]
  verbs: [create]
# the one Secret per namespace through which worker and CronJob pods of queues without
# spec.redis get the operator's default Redis URL (never written into a pod spec). A
# server-side apply that creates an object is authorised as `create` of its name, so even
# create is limited to this name; delete: when the last such queue moves to spec.redis (and
# what OwnerReferencesPermissionEnforcement asks for setting its ownerReferences)
- apiGroups: [""]
  resources: [secrets]
  resourceNames: [jobqueue-default-redis]
  verbs: [get, create, patch, delete]
{{- with .Values.rbac.redisSecretNames }}
# the Redis URL Secrets that JobQueues reference in spec.redis.urlSecretRef: these names only
- apiGroups: [""]
  resources: [secrets]
  resourceNames: {{ toJson . }}
  verbs: [get]
{{- end }}
{{- with .Values.rbac.notificationSecretNames }}
# the webhook URL Secrets of spec.failureNotification.webhook.urlSecretRef: these names only
- apiGroups: [""]
  resources: [secrets]
  resourceNames: {{ toJson . }}
  verbs: [get]
{{- end }}
{{- with .Values.rbac.extraRules }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
What the operator needs cluster-wide in either mode: read-only discovery for kopf (which
CRDs and namespaces exist). Nothing here reads or changes workloads.
*/}}
{{- define "jobqueue-operator.rbac.clusterRules" -}}
# kopf's discovery: whether the JobQueue and RecurringJob CRDs are served
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
# kopf's discovery of the namespaces it serves (watchNamespaces, or all of them)
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- end }}

{{/*
The RoleBinding/ClusterRoleBinding subject: the operator's ServiceAccount.
*/}}
{{- define "jobqueue-operator.rbac.subjects" -}}
- kind: ServiceAccount
  name: {{ include "jobqueue-operator.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
{{- end }}

{{/*
Whether to render a monitoring object: the cluster serves its Prometheus Operator API, or
`monitoringCapabilityCheck` is off (GitOps tools render without a cluster, where no API is
ever reported). Usage: include "jobqueue-operator.hasMonitoringAPI" (list . "ServiceMonitor")
*/}}
{{- define "jobqueue-operator.hasMonitoringAPI" -}}
{{- $root := index . 0 }}
{{- if or (not $root.Values.monitoringCapabilityCheck) ($root.Capabilities.APIVersions.Has (printf "monitoring.coreos.com/v1/%s" (index . 1))) }}true{{ end }}
{{- end }}
