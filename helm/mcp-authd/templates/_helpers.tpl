{{/* Names, labels and the invalid-combination guards. */}}

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
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mcp-authd
{{- end }}

{{- define "mcp-authd.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mcp-authd.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "mcp-authd.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The Secret mounted at /etc/mcp-authd/secrets: the chart's or existingSecret. */}}
{{- define "mcp-authd.secretName" -}}
{{- default (include "mcp-authd.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{- define "mcp-authd.secretDir" -}}/etc/mcp-authd/secrets{{- end }}
{{- define "mcp-authd.redisSecretDir" -}}/etc/mcp-authd/redis{{- end }}
{{- define "mcp-authd.redisCaDir" -}}/etc/mcp-authd/redis-ca{{- end }}
{{- define "mcp-authd.configPath" -}}/etc/mcp-authd/mcp-authd.toml{{- end }}

{{/* In-cluster URL of /verify, as the ingress controller calls it (a FQDN: nginx resolves
without search domains). */}}
{{- define "mcp-authd.verifyURL" -}}
{{- printf "http://%s.%s.svc.%s:%v/verify" (include "mcp-authd.fullname" .) .Release.Namespace .Values.clusterDomain .Values.ports.http }}
{{- end }}

{{/* The issuer parsed: scheme and host (no port). */}}
{{- define "mcp-authd.issuerHost" -}}
{{- $u := urlParse (required "config.server.issuer is required" .Values.config.server.issuer) }}
{{- regexReplaceAll ":[0-9]+$" $u.host "" }}
{{- end }}
{{- define "mcp-authd.issuerScheme" -}}
{{- (urlParse .Values.config.server.issuer).scheme }}
{{- end }}

{{/* Whether the pods share one store that allows several replicas. */}}
{{- define "mcp-authd.multiReplica" -}}
{{- if or (gt (int .Values.replicaCount) 1) .Values.autoscaling.enabled }}true{{ end }}
{{- end }}

{{/* The protected MCP servers: `protect`, plus the example echo server when enabled. Each with
host, path, endpoint, stripPrefix, scheme and the resource URL filled in. JSON, for fromJson. */}}
{{- define "mcp-authd.protected" -}}
{{- $issuerHost := include "mcp-authd.issuerHost" . }}
{{- $scheme := include "mcp-authd.issuerScheme" . }}
{{- $list := list }}
{{- $all := .Values.protect | default list }}
{{- if .Values.echo.enabled }}
{{- $echo := dict "name" "echo" "path" .Values.echo.path "backend" (dict "service" (printf "%s-echo" (include "mcp-authd.fullname" .)) "port" .Values.echo.port) "required_scopes" .Values.echo.required_scopes }}
{{- $all = append $all $echo }}
{{- end }}
{{- $seen := dict }}
{{- range $i, $p := $all }}
{{- $name := required (printf "protect[%d].name is required" $i) $p.name }}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" $name) }}
{{- fail (printf "protect[%d].name %q: lower-case letters, digits and '-' (it names Kubernetes objects)" $i $name) }}
{{- end }}
{{- if hasKey $seen $name }}
{{- fail (printf "protect: the name %q is used twice" $name) }}
{{- end }}
{{- $_ := set $seen $name true }}
{{- $path := required (printf "protect[%d] (%s): path is required, e.g. /%s" $i $name $name) $p.path | trimSuffix "/" }}
{{- if not (regexMatch "^/[^/]" $path) }}
{{- fail (printf "protect[%d] (%s): path %q must start with / and not be the root: each server lives under a prefix of its own" $i $name $path) }}
{{- end }}
{{- if not $p.backend }}
{{- fail (printf "protect[%d] (%s): backend.service and backend.port are required" $i $name) }}
{{- end }}
{{- $_ := required (printf "protect[%d] (%s): backend.service is required" $i $name) $p.backend.service }}
{{- $_ := required (printf "protect[%d] (%s): backend.port is required" $i $name) $p.backend.port }}
{{- $host := default $issuerHost $p.host }}
{{- $endpoint := ternary "/mcp" $p.endpoint (not (hasKey $p "endpoint")) }}
{{- $strip := ternary true $p.stripPrefix (not (hasKey $p "stripPrefix")) }}
{{- $url := $p.url | default (printf "%s://%s%s%s" (default $scheme $p.scheme) $host $path $endpoint) }}
{{- $e := merge (dict "name" $name "host" $host "path" $path "endpoint" $endpoint "stripPrefix" $strip "url" $url) (deepCopy $p) }}
{{- $list = append $list $e }}
{{- end }}
{{- dict "items" $list | toJson }}
{{- end }}

{{/* The hosts mcp-authd's own endpoints are routed on: the issuer's, then every protect host. */}}
{{- define "mcp-authd.publicHosts" -}}
{{- $hosts := list (include "mcp-authd.issuerHost" .) }}
{{- range (include "mcp-authd.protected" . | fromJson).items }}
{{- $hosts = append $hosts .host }}
{{- end }}
{{- $hosts | uniq | toJson }}
{{- end }}

{{/* Refuse combinations that cannot work, with a message saying what to change. Included by
every template that depends on them. */}}
{{- define "mcp-authd.validate" -}}
{{- $type := .Values.store.type }}
{{- if not (has $type (list "embedded" "redis")) }}
{{- fail (printf "store.type %q: must be \"embedded\" or \"redis\"" $type) }}
{{- end }}
{{- if and (eq $type "embedded") (include "mcp-authd.multiReplica" .) }}
{{- fail "store.type embedded keeps all state in one file that one process holds open: run one replica (replicaCount: 1, autoscaling.enabled: false), or use store.type: redis for several" }}
{{- end }}
{{- if eq $type "redis" }}
{{- if and (not .Values.store.redis.url) (not (and .Values.store.redis.existingSecret .Values.store.redis.urlKey)) }}
{{- fail "store.type redis: set store.redis.url (redis://host:6379), or store.redis.existingSecret with store.redis.urlKey" }}
{{- end }}
{{- if and .Values.store.redis.urlKey (not .Values.store.redis.existingSecret) }}
{{- fail "store.redis.urlKey names a key of store.redis.existingSecret: set that too" }}
{{- end }}
{{- if regexMatch "^rediss?://[^/]*:[^/@]*@" (default "" .Values.store.redis.url) }}
{{- fail "store.redis.url must not carry a password (it would sit in a ConfigMap): use store.redis.password or store.redis.existingSecret" }}
{{- end }}
{{- end }}
{{- if and (not .Values.secrets.existingSecret) (not .Values.secrets.signingKey) (not .Values.secrets.generateSigningKey) }}
{{- fail "no signing key: set secrets.signingKey (PEM), secrets.existingSecret, or secrets.generateSigningKey: true" }}
{{- end }}
{{- $provider := .Values.ingress.provider | default "" }}
{{- if not (has $provider (list "" "traefik" "nginx")) }}
{{- fail (printf "ingress.provider %q: must be \"\", \"traefik\" or \"nginx\"" $provider) }}
{{- end }}
{{- if $provider }}
{{- $h := include "mcp-authd.issuerHost" . }}
{{- if not (has (urlParse .Values.config.server.issuer).path (list "" "/")) }}
{{- fail (printf "config.server.issuer %s has a path: the routes publish mcp-authd's endpoints at the root of its host, so the issuer must be https://host" .Values.config.server.issuer) }}
{{- end }}
{{- if or (eq $h "localhost") (hasPrefix "127." $h) (eq $h "[::1]") }}
{{- fail (printf "ingress.provider is %s but config.server.issuer is %s: set it to the public URL the ingress serves, e.g. https://mcp.example.com" $provider .Values.config.server.issuer) }}
{{- end }}
{{- end }}
{{- if and (or .Values.protect .Values.echo.enabled) (not $provider) }}
{{- fail "protect (or echo.enabled) needs ingress.provider: traefik or nginx, which does the enforcing" }}
{{- end }}
{{- if not .Values.secrets.existingSecret }}
{{- $gh := dig "github" dict (.Values.config | default dict) }}
{{- if and $gh.client_id (not .Values.secrets.githubClientSecret) (not (or (hasKey $gh "client_secret") (hasKey $gh "client_secret_file"))) }}
{{- fail "config.github.client_id is set: give its secret in secrets.githubClientSecret (or secrets.existingSecret)" }}
{{- end }}
{{- range (dig "oidc" list (.Values.config | default dict)) }}
{{- if and (not (hasKey $.Values.secrets.oidcClientSecrets (toString .id))) (not (or (hasKey . "client_secret") (hasKey . "client_secret_file"))) }}
{{- fail (printf "config.oidc %q: give its secret in secrets.oidcClientSecrets.%s, or `client_secret: \"\"` in the entry for a public client (PKCE only)" (toString .id) (toString .id)) }}
{{- end }}
{{- end }}
{{- end }}
{{- $_ := include "mcp-authd.protected" . }}
{{- end }}

{{/* The identity headers /verify answers with (config.verify.headers, else the defaults), and
Authorization: listed so the proxy replaces the client's token with /verify's (none, unless
verify.forward_token), i.e. drops it before the MCP server. JSON list. */}}
{{- define "mcp-authd.authResponseHeaders" -}}
{{- $h := dig "verify" "headers" dict (.Values.config | default dict) }}
{{- list (default "X-User-Id" $h.user_id) (default "X-User-Name" $h.user_name) (default "X-User-Email" $h.user_email) (default "X-Client-Id" $h.client_id) (default "X-Scope" $h.scope) "Authorization" | toJson }}
{{- end }}

{{/* mcp-authd's own endpoints, routed unchecked to it: [path, exact?]. /verify is never among
them, nor /metrics, /health, /ready. */}}
{{- define "mcp-authd.ownRoutes" -}}
{{- list
  (list "/.well-known" false)
  (list "/register" false)
  (list "/authorize" true)
  (list "/token" true)
  (list "/revoke" true)
  (list "/introspect" true)
  (list "/jwks" true)
  (list "/login" false)
  (list "/callback" false)
  (list "/device_authorization" true)
  (list "/device" false)
  (list "/consent" true)
  | toJson }}
{{- end }}

{{- define "mcp-authd.traefikAnnotations" -}}
{{- $a := deepCopy (.Values.ingress.annotations | default dict) }}
{{- with .Values.ingress.className }}{{ $_ := set $a "kubernetes.io/ingress.class" . }}{{ end }}
{{- with $a }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{- define "mcp-authd.traefikTLS" -}}
{{- $t := .Values.ingress.traefik }}
{{- if .Values.ingress.tls.secretName }}
tls:
  secretName: {{ .Values.ingress.tls.secretName }}
{{- else if $t.certResolver }}
tls:
  certResolver: {{ $t.certResolver }}
{{- end }}
{{- end }}
