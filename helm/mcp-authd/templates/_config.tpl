{{/*
mcp-authd.toml: `config` with the keys the chart owns set over it, written as TOML.

Helm's own toToml writes every number as a float (3600.0), which the typed settings refuse to
read as an integer, and puts keys in an order that TOML forbids for mixed tables; the writer
below prints whole numbers as integers and each table's plain keys before its sub-tables.
*/}}

{{/* The configuration as a dict: `config`, then what the chart owns. */}}
{{- define "mcp-authd.configDict" -}}
{{- $v := .Values }}
{{- $secretDir := include "mcp-authd.secretDir" . }}
{{- $c := deepCopy ($v.config | default dict) }}

{{- $_ := set $c "server" (merge (dict "bind" (printf "0.0.0.0:%v" $v.ports.http) "data_dir" $v.dataDir) ($c.server | default dict)) }}

{{- $store := dict "type" $v.store.type }}
{{- if eq $v.store.type "redis" }}
{{- $r := $v.store.redis }}
{{- $_ := set $store "key_prefix" $r.keyPrefix }}
{{- if and $r.existingSecret $r.urlKey }}
{{- $_ := set $store "redis_url_file" (printf "%s/%s" (include "mcp-authd.redisSecretDir" .) $r.urlKey) }}
{{- else }}
{{- $_ := set $store "redis_url" $r.url }}
{{- if $r.existingSecret }}
{{- $_ := set $store "redis_password_file" (printf "%s/%s" (include "mcp-authd.redisSecretDir" .) $r.passwordKey) }}
{{- else if $r.password }}
{{- $_ := set $store "redis_password_file" (printf "%s/%s" $secretDir $v.secrets.keys.redisPassword) }}
{{- end }}
{{- end }}
{{- if $r.caSecret }}
{{- $_ := set $store "redis_ca_file" (printf "%s/%s" (include "mcp-authd.redisCaDir" .) $r.caKey) }}
{{- end }}
{{- end }}
{{- $_ := set $c "store" (merge $store (omit ($c.store | default dict) "type" "redis_url" "redis_url_file" "redis_password" "redis_password_file" "redis_ca_file")) }}

{{- $tokens := dict "private_key_file" (printf "%s/%s" $secretDir $v.secrets.keys.signingKey) }}
{{- if and (not $v.secrets.existingSecret) $v.secrets.previousSigningKeys }}
{{- $prev := list }}
{{- range $i, $_ := $v.secrets.previousSigningKeys }}
{{- $prev = append $prev (printf "%s/previous-signing-key-%d.pem" $secretDir $i) }}
{{- end }}
{{- $_ := set $tokens "previous_key_files" $prev }}
{{- end }}
{{- $_ := set $c "tokens" (merge $tokens ($c.tokens | default dict)) }}

{{- $verify := dict "grpc_bind" (ternary (printf "0.0.0.0:%v" $v.ports.grpc) "" (eq (toString $v.grpc.enabled) "true")) }}
{{- $_ := set $c "verify" (merge $verify ($c.verify | default dict)) }}

{{- if and $c.github $c.github.client_id }}
{{- if not (or (hasKey $c.github "client_secret") (hasKey $c.github "client_secret_file")) }}
{{- $_ := set $c.github "client_secret_file" (printf "%s/%s" $secretDir $v.secrets.keys.githubClientSecret) }}
{{- end }}
{{- end }}

{{- range $c.oidc | default list }}
{{- if not (or (hasKey . "client_secret") (hasKey . "client_secret_file")) }}
{{- $_ := set . "client_secret_file" (printf "%s/%s%s-client-secret" $secretDir $v.secrets.keys.oidcClientSecretPrefix (required "config.oidc[].id is required" .id)) }}
{{- end }}
{{- end }}

{{- if and $v.secrets.registrationInitialAccessToken (not $v.secrets.existingSecret) }}
{{- $_ := set $c "registration" (merge (dict "initial_access_token_file" (printf "%s/%s" $secretDir $v.secrets.keys.registrationInitialAccessToken)) ($c.registration | default dict)) }}
{{- end }}

{{- $resources := $c.resources | default list }}
{{- range (include "mcp-authd.protected" . | fromJson).items }}
{{- $res := merge (dict "url" .url) (pick . "scopes" "required_scopes" "allowed_users" "allowed_orgs" "allowed_email_domains" "rules") }}
{{- $resources = append $resources $res }}
{{- end }}
{{- if $resources }}
{{- $_ := set $c "resources" $resources }}
{{- end }}
{{- toJson $c }}
{{- end }}

{{/* The rendered file. */}}
{{- define "mcp-authd.configToml" -}}
# mcp-authd.toml, rendered by the mcp-authd Helm chart from `config` and the chart's own
# settings. Environment variables MCP_AUTHD__SECTION__KEY override it.
{{ include "mcp-authd.toml.table" (dict "path" "" "table" (include "mcp-authd.configDict" . | fromJson) "array" false) | trim }}
{{- end }}

{{/* One TOML value: string, bool, number (whole numbers as integers) or a list of them. */}}
{{- define "mcp-authd.toml.value" -}}
{{- if kindIs "string" . }}{{ toJson . }}
{{- else if kindIs "bool" . }}{{ . }}
{{- else if or (kindIs "float64" .) (kindIs "float32" .) }}{{ if eq (floor .) (float64 .) }}{{ int64 . }}{{ else }}{{ . }}{{ end }}
{{- else if or (kindIs "int" .) (kindIs "int64" .) (kindIs "int32" .) (kindIs "uint64" .) }}{{ . }}
{{- else if kindIs "slice" . }}[{{ range $i, $e := . }}{{ if $i }}, {{ end }}{{ include "mcp-authd.toml.value" $e }}{{ end }}]
{{- else }}{{ fail (printf "config: %v (%s) has no TOML form" . (kindOf .)) }}
{{- end }}
{{- end }}

{{- define "mcp-authd.toml.key" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . }}{{ . }}{{ else }}{{ toJson . }}{{ end }}
{{- end }}

{{/* A table at `path` (dotted, already quoted where needed): its header (`[[path]]` for an
array element), its plain keys, then its sub-tables and arrays of tables. */}}
{{- define "mcp-authd.toml.table" -}}
{{- $path := .path }}
{{- $t := .table }}
{{- if .array }}
[[{{ $path }}]]
{{- else if $path }}
[{{ $path }}]
{{- end }}
{{- range $k := keys $t | sortAlpha }}
{{- $val := get $t $k }}
{{- $isTable := kindIs "map" $val }}
{{- $isArrayOfTables := and (kindIs "slice" $val) (gt (len $val) 0) (kindIs "map" (first $val)) }}
{{- if not (or (kindIs "invalid" $val) $isTable $isArrayOfTables) }}
{{ include "mcp-authd.toml.key" $k }} = {{ include "mcp-authd.toml.value" $val }}
{{- end }}
{{- end }}
{{- range $k := keys $t | sortAlpha }}
{{- $val := get $t $k }}
{{- $sub := ternary (include "mcp-authd.toml.key" $k) (printf "%s.%s" $path (include "mcp-authd.toml.key" $k)) (eq $path "") }}
{{- if kindIs "map" $val }}
{{ include "mcp-authd.toml.table" (dict "path" $sub "table" $val "array" false) }}
{{- else if and (kindIs "slice" $val) (gt (len $val) 0) (kindIs "map" (first $val)) }}
{{- range $val }}
{{ include "mcp-authd.toml.table" (dict "path" $sub "table" . "array" true) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
