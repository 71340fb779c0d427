{{/* Names, labels and the checks every template relies on. */}}

{{- define "mcp-authd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mcp-authd.fullname" -}}
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

{{- define "mcp-authd.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mcp-authd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mcp-authd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "mcp-authd.labels" -}}
helm.sh/chart: {{ include "mcp-authd.chart" . }}
{{ include "mcp-authd.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "mcp-authd.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mcp-authd.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "mcp-authd.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* The Secret the pods read: the chart's or existingSecret. */}}
{{- define "mcp-authd.secretName" -}}
{{- default (include "mcp-authd.fullname" .) .Values.existingSecret }}
{{- end }}

{{/* Whether every replica signs with a key from the Secret. */}}
{{- define "mcp-authd.hasSigningKey" -}}
{{- if or .Values.secrets.signingKey (and .Values.existingSecret .Values.existingSecretHasSigningKey) }}true{{ end }}
{{- end }}

{{/* The in-cluster URL of /verify, for the ingress. */}}
{{- define "mcp-authd.verifyURL" -}}
{{- printf "http://%s.%s.svc.cluster.local:%v/verify" (include "mcp-authd.fullname" .) .Release.Namespace .Values.service.port }}
{{- end }}

{{/* The issuer's host (the routes of the authorization server live there). */}}
{{- define "mcp-authd.issuerHost" -}}
{{- (urlParse .Values.issuer).host | splitList ":" | first }}
{{- end }}

{{/* The identity headers /verify sends (verify.headers.* in config can rename them). */}}
{{- define "mcp-authd.identityHeaders" -}}
X-User-Id,X-User-Name,X-User-Email,X-Client-Id,X-Scope
{{- end }}

{{/*
The protected servers: protect.servers, plus the example echo server when enabled.
Returned as YAML: {servers: [...]}.
*/}}
{{- define "mcp-authd.servers" -}}
{{- $servers := list }}
{{- range .Values.protect.servers }}
{{- $servers = append $servers . }}
{{- end }}
{{- if .Values.echo.enabled }}
{{- $servers = append $servers (dict "name" "echo" "host" (.Values.echo.host | default (include "mcp-authd.issuerHost" .)) "pathPrefix" "/echo" "stripPrefix" true "mcpPath" "/mcp" "backend" (dict "service" (printf "%s-echo" (include "mcp-authd.fullname" .)) "port" .Values.echo.port) "requiredScopes" (list "mcp")) }}
{{- end }}
{{- toYaml (dict "servers" $servers) }}
{{- end }}

{{/*
Refuses combinations that cannot work, with the setting to change. Included by every template
that depends on them, so `helm template` and `helm install` fail before anything is applied.
*/}}
{{- define "mcp-authd.validate" -}}
{{- if not .Values.issuer }}
{{- fail "issuer is required: the public https URL MCP clients reach mcp-authd at (e.g. https://auth.example.com)" }}
{{- end }}
{{- $u := urlParse .Values.issuer }}
{{- if not (has $u.scheme (list "http" "https")) }}
{{- fail (printf "issuer %q must be an http(s) URL" .Values.issuer) }}
{{- end }}
{{- if not (has $u.path (list "" "/")) }}
{{- fail (printf "issuer %q must be an origin (no path): the chart routes mcp-authd's endpoints at the root of the issuer's host" .Values.issuer) }}
{{- end }}
{{- if not (has .Values.store.type (list "embedded" "redis")) }}
{{- fail (printf "store.type must be embedded or redis, not %q" .Values.store.type) }}
{{- end }}
{{- $many := or (gt (int .Values.replicaCount) 1) .Values.autoscaling.enabled }}
{{- if and (eq .Values.store.type "embedded") $many }}
{{- fail "store.type=embedded keeps state in one file on one volume: it runs as exactly one replica. Set replicaCount=1 and autoscaling.enabled=false, or use store.type=redis for several replicas." }}
{{- end }}
{{- if and $many (not (include "mcp-authd.hasSigningKey" .)) }}
{{- fail "several replicas must sign tokens with one key: set secrets.signingKey (a PEM private key), or existingSecret with existingSecretHasSigningKey=true" }}
{{- end }}
{{- if and (eq .Values.store.type "redis") (not .Values.store.redis.url) (not .Values.existingSecret) }}
{{- fail "store.type=redis needs store.redis.url (or existingSecret holding secretKeys.redisUrl)" }}
{{- end }}
{{- if not (has .Values.protect.provider (list "traefik" "nginx" "none")) }}
{{- fail (printf "protect.provider must be traefik, nginx or none, not %q" .Values.protect.provider) }}
{{- end }}
{{- range (include "mcp-authd.servers" . | fromYaml).servers }}
{{- if not (and .name .host .pathPrefix .backend) }}
{{- fail (printf "protect.servers: every entry needs name, host, pathPrefix and backend {service, port} (%v)" .) }}
{{- end }}
{{- if not (hasPrefix "/" .pathPrefix) }}
{{- fail (printf "protect.servers[%s].pathPrefix must start with /" .name) }}
{{- end }}
{{- end }}
{{- end }}

{{/* The Traefik rule matching mcp-authd's own endpoints. */}}
{{- define "mcp-authd.traefikAuthPaths" -}}
PathPrefix(`/.well-known/`) || Path(`/register`) || PathPrefix(`/register/`) || Path(`/authorize`) || Path(`/token`) || Path(`/revoke`) || Path(`/introspect`) || Path(`/jwks`) || Path(`/login`) || PathPrefix(`/login/`) || Path(`/callback`) || PathPrefix(`/callback/`) || Path(`/device_authorization`) || Path(`/device`) || PathPrefix(`/device/`)
{{- end }}
