#!/usr/bin/env python3
"""Checks the Helm chart in helm/mcp-authd offline (run by `make helm-lint`, hence by `make test`).

For every helm/mcp-authd/ci/*-values.yaml:
  1. `helm lint` (the Helm SDK, through PyPI helm-python-sdk): no errors.
  2. `helm template`: every manifest validated against the Kubernetes OpenAPI schemas
     (PyPI kubernetes-validate, strict: unknown fields are errors). The Traefik and
     prometheus-operator custom resources have no schema there; their fields are asserted below.
  3. The facts that make the deployment work, asserted on the rendered objects: probes, ports,
     hardened security context, checksum annotations, the store's volume, the forwardAuth address
     and authResponseHeaders (Traefik), the auth-url annotations (ingress-nginx), the resources in
     mcp-authd.toml, Secret or existingSecret, PDB, HPA, ServiceMonitor.
  4. With MCP_AUTHD_BIN set: `mcp-authd check-config` on the rendered mcp-authd.toml with the
     Deployment's environment and the Secret's files, so a chart that renders a configuration the
     server would refuse fails here.
Then the guards: combinations that cannot work must fail to render, with a message naming the fix.

No cluster is involved (kind and k3s need a container engine, which this machine does not have).
"""

from __future__ import annotations

import base64
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import tomllib

import helm_python as helm
import kubernetes_validate
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "mcp-authd"
RELEASE, NAMESPACE = "demo", "mcp"
FULL = f"{RELEASE}-mcp-authd"
KUBE_VERSION = "1.33.0"
IDENTITY = ["X-User-Id", "X-User-Name", "X-User-Email", "X-Client-Id", "X-Scope"]
VERIFY_URL = f"http://{FULL}.{NAMESPACE}.svc.cluster.local:8080/verify"
CRDS = {"traefik.io/v1alpha1", "monitoring.coreos.com/v1"}

failures: list[str] = []


def check(cond: bool, what: str) -> None:
    if not cond:
        failures.append(what)


def render(values: dict) -> list[dict]:
    chart = helm.Chart.load(str(CHART))
    out = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    docs = []
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc.setdefault("_template", path)
                docs.append(doc)
    return docs


def find(docs: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs: list[dict], kind: str, name: str) -> dict:
    found = find(docs, kind, name)
    if len(found) != 1:
        raise AssertionError(f"expected one {kind} {name}, found {len(found)}")
    return found[0]


def validate_schemas(case: str, docs: list[dict]) -> None:
    for doc in docs:
        body = {k: v for k, v in doc.items() if k != "_template"}
        if body["apiVersion"] in CRDS:
            continue
        try:
            kubernetes_validate.validate(body, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            failures.append(f"{case}: {doc['kind']} {doc['metadata']['name']}: {e.message} at {list(e.path)}")


def env_of(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def check_authd(case: str, values: dict, docs: list[dict]) -> dict:
    """The mcp-authd Deployment, whatever the values."""
    dep = one(docs, "Deployment", FULL)
    pod = dep["spec"]["template"]
    spec = pod["spec"]
    c = spec["containers"][0]
    check(c["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}, f"{case}: liveness on /health")
    check(c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}, f"{case}: readiness on /ready")
    check(c["startupProbe"]["httpGet"]["path"] == "/health", f"{case}: startup probe on /health")
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    check(ports.get("http") == 8080, f"{case}: container port http 8080")
    sc, psc = c["securityContext"], spec["securityContext"]
    check(sc["readOnlyRootFilesystem"] is True, f"{case}: read-only root filesystem")
    check(sc["allowPrivilegeEscalation"] is False, f"{case}: no privilege escalation")
    check(sc["capabilities"]["drop"] == ["ALL"], f"{case}: every capability dropped")
    check(psc["runAsNonRoot"] is True and psc["runAsUser"] != 0, f"{case}: non-root")
    check(psc["seccompProfile"]["type"] == "RuntimeDefault", f"{case}: seccomp RuntimeDefault")
    check(spec["automountServiceAccountToken"] is False, f"{case}: no service account token")
    ann = pod["metadata"]["annotations"]
    for key in ("checksum/config", "checksum/secret"):
        check(re.fullmatch(r"[0-9a-f]{64}", ann.get(key, "")) is not None, f"{case}: {key} annotation")
    env = env_of(c)
    check(env["MCP_AUTHD__SERVER__ISSUER"] == values["issuer"], f"{case}: issuer from values")
    check(env["MCP_AUTHD__SERVER__DATA_DIR"] == "/data", f"{case}: data dir /data")
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    check(mounts.get("/data") == "data" and mounts.get("/tmp") == "tmp", f"{case}: writable /data and /tmp")
    check(c["args"] == ["--config", "/etc/mcp-authd/config/mcp-authd.toml", "serve"], f"{case}: serve with the ConfigMap")
    volumes = {v["name"]: v for v in spec["volumes"]}
    secret_name = values.get("existingSecret") or FULL
    check(volumes["secrets"]["secret"]["secretName"] == secret_name, f"{case}: secret volume from {secret_name}")
    svc = one(docs, "Service", FULL)
    svc_ports = {p["name"]: p["port"] for p in svc["spec"]["ports"]}
    check(svc_ports.get("http") == 8080, f"{case}: service port http")
    grpc = values.get("grpc", {}).get("enabled", False)
    check(("grpc" in svc_ports) == grpc and ("grpc" in ports) == grpc, f"{case}: gRPC port iff grpc.enabled")
    if grpc:
        check(env.get("MCP_AUTHD__VERIFY__GRPC_BIND") == "0.0.0.0:9191", f"{case}: gRPC bind")

    store = values.get("store", {}).get("type", "embedded")
    check(env["MCP_AUTHD__STORE__TYPE"] == store, f"{case}: store type")
    pvcs = find(docs, "PersistentVolumeClaim")
    persistent = store == "embedded" and values.get("store", {}).get("embedded", {}).get("persistence", {}).get("enabled", True)
    check(bool(pvcs) == bool(persistent), f"{case}: a PVC iff the embedded store persists")
    if persistent:
        check(volumes["data"]["persistentVolumeClaim"]["claimName"] == FULL, f"{case}: data on the PVC")
        check(dep["spec"]["strategy"]["type"] == "Recreate", f"{case}: Recreate with one RWO volume")
        check(dep["spec"].get("replicas") == 1, f"{case}: embedded runs one replica")
    else:
        check("emptyDir" in volumes["data"], f"{case}: data in an emptyDir")
    if store == "redis":
        check(env["MCP_AUTHD__STORE__REDIS_URL_FILE"] == "/etc/mcp-authd/secrets/redis-url", f"{case}: Redis URL from the Secret")

    secrets = find(docs, "Secret")
    if values.get("existingSecret"):
        check(not secrets, f"{case}: no Secret rendered with existingSecret")
    else:
        check(len(secrets) == 1, f"{case}: the chart's Secret")
        data = secrets[0].get("data") or {}
        if store == "redis":
            url = base64.b64decode(data.get("redis-url", "")).decode()
            check(url == values["store"]["redis"]["url"], f"{case}: Redis URL in the Secret")
        for name, text in (values.get("secrets") or {}).items():
            if name == "signingKey" and text:
                check(base64.b64decode(data["signing-key.pem"]).decode() == text, f"{case}: signing key in the Secret")
    many = values.get("replicaCount", 1) > 1 or values.get("autoscaling", {}).get("enabled", False)
    if many:
        check(env.get("MCP_AUTHD__TOKENS__PRIVATE_KEY_FILE") == "/etc/mcp-authd/secrets/signing-key.pem", f"{case}: one key for all replicas")

    hpa = find(docs, "HorizontalPodAutoscaler")
    check(bool(hpa) == values.get("autoscaling", {}).get("enabled", False), f"{case}: HPA iff autoscaling")
    if hpa:
        check(hpa[0]["spec"]["scaleTargetRef"]["name"] == FULL, f"{case}: HPA scales mcp-authd")
        check("replicas" not in dep["spec"], f"{case}: no fixed replicas under an HPA")
    pdb = find(docs, "PodDisruptionBudget")
    check(bool(pdb) == values.get("podDisruptionBudget", {}).get("enabled", False), f"{case}: PDB iff enabled")
    if pdb:
        check(pdb[0]["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"], f"{case}: PDB selects mcp-authd")
    sm = find(docs, "ServiceMonitor")
    check(bool(sm) == values.get("serviceMonitor", {}).get("enabled", False), f"{case}: ServiceMonitor iff enabled")
    if sm:
        check(sm[0]["spec"]["endpoints"][0]["path"] == "/metrics" and sm[0]["spec"]["endpoints"][0]["port"] == "http", f"{case}: scrapes /metrics")
    return dep


def servers_of(values: dict) -> list[dict]:
    servers = list(values.get("protect", {}).get("servers", []))
    echo = values.get("echo", {})
    if echo.get("enabled"):
        host = echo.get("host") or values["issuer"].split("://", 1)[1]
        servers.append({"name": "echo", "host": host, "pathPrefix": "/echo", "stripPrefix": True,
                        "backend": {"service": f"{FULL}-echo", "port": 3001}, "requiredScopes": ["mcp"]})
    return servers


def check_config_resources(case: str, values: dict, docs: list[dict]) -> str:
    text = one(docs, "ConfigMap", FULL)["data"]["mcp-authd.toml"]
    config = tomllib.loads(text)
    want = [f"https://{s['host']}{s['pathPrefix'].rstrip('/')}{s.get('mcpPath', '/mcp')}" for s in servers_of(values)]
    got = [r["url"] for r in config.get("resources", [])]
    check(got == want, f"{case}: [[resources]] {got} != {want}")
    for r, s in zip(config.get("resources", []), servers_of(values)):
        check(r.get("required_scopes", []) == s.get("requiredScopes", []), f"{case}: required_scopes of {s['name']}")
        check(r.get("allowed_users", []) == s.get("allowedUsers", []), f"{case}: allowed_users of {s['name']}")
    return text


def check_traefik(case: str, values: dict, docs: list[dict]) -> None:
    mw = one(docs, "Middleware", f"{FULL}-forward-auth")["spec"]["forwardAuth"]
    check(mw["address"] == VERIFY_URL, f"{case}: forwardAuth address {mw['address']}")
    check(mw["authResponseHeaders"] == IDENTITY + ["Authorization"], f"{case}: authResponseHeaders {mw['authResponseHeaders']}")
    check(mw["trustForwardHeader"] is False, f"{case}: Traefik's own X-Forwarded-*")
    issuer_host = values["issuer"].split("://", 1)[1]
    auth = one(docs, "IngressRoute", FULL)["spec"]["routes"][0]
    check(auth["match"].startswith(f"Host(`{issuer_host}`)"), f"{case}: auth routes on the issuer host")
    for path in ["PathPrefix(`/.well-known/`)", "Path(`/register`)", "Path(`/authorize`)", "Path(`/token`)",
                 "Path(`/revoke`)", "Path(`/jwks`)", "Path(`/device_authorization`)", "PathPrefix(`/device/`)",
                 "PathPrefix(`/callback/`)", "Path(`/login`)"]:
        check(path in auth["match"], f"{case}: {path} routed to mcp-authd")
    check("/verify" not in auth["match"], f"{case}: /verify never routed from outside")
    check(auth["services"] == [{"name": FULL, "port": 8080}], f"{case}: auth routes to the service")
    for s in servers_of(values):
        name = f"{FULL}-{s['name']}"
        route = one(docs, "IngressRoute", name)["spec"]
        r = route["routes"][0]
        prefix = s["pathPrefix"].rstrip("/")
        check(r["match"] == f"Host(`{s['host']}`) && PathPrefix(`{prefix}/`)", f"{case}: {name} match {r['match']}")
        mws = [m["name"] for m in r["middlewares"]]
        check(mws[0] == f"{FULL}-forward-auth", f"{case}: {name} is checked first")
        if s.get("stripPrefix"):
            check(mws[1:] == [f"{name}-strip"], f"{case}: {name} strips after the check")
            strip = one(docs, "Middleware", f"{name}-strip")["spec"]["stripPrefix"]["prefixes"]
            check(strip == [prefix], f"{case}: {name} strips {prefix}")
        else:
            check(mws[1:] == [], f"{case}: {name} keeps its path")
        check(r["services"] == [{"name": s["backend"]["service"], "port": s["backend"]["port"]}], f"{case}: {name} backend")
        if s["host"] != issuer_host:
            prm = [x for x in route["routes"] if "oauth-protected-resource" in x["match"]]
            check(len(prm) == 1 and prm[0]["services"][0]["name"] == FULL, f"{case}: RFC 9728 metadata on {s['host']}")
        tls = values.get("protect", {}).get("traefik", {}).get("tls")
        if tls:
            check(route.get("tls") == tls, f"{case}: {name} tls")


def check_nginx(case: str, values: dict, docs: list[dict]) -> None:
    issuer_host = values["issuer"].split("://", 1)[1]
    nginx = values["protect"]["nginx"]
    auth = one(docs, "Ingress", FULL)
    check("nginx.ingress.kubernetes.io/auth-url" not in (auth["metadata"].get("annotations") or {}), f"{case}: no auth on mcp-authd's own routes")
    rules = {r["host"]: r for r in auth["spec"]["rules"]}
    paths = {p["path"]: p["pathType"] for p in rules[issuer_host]["http"]["paths"]}
    for path, kind in [("/.well-known", "Prefix"), ("/register", "Prefix"), ("/authorize", "Exact"), ("/token", "Exact"),
                       ("/device_authorization", "Exact"), ("/device", "Prefix"), ("/callback", "Prefix"), ("/jwks", "Exact")]:
        check(paths.get(path) == kind, f"{case}: {path} ({kind}) routed to mcp-authd")
    check(not any(p.startswith("/verify") for p in paths), f"{case}: /verify never routed")
    for s in servers_of(values):
        name = f"{FULL}-{s['name']}"
        ing = one(docs, "Ingress", name)
        ann = ing["metadata"]["annotations"]
        check(ann["nginx.ingress.kubernetes.io/auth-url"] == VERIFY_URL, f"{case}: {name} auth-url")
        check(ann["nginx.ingress.kubernetes.io/auth-response-headers"] == ",".join(IDENTITY + ["Authorization"]), f"{case}: {name} auth-response-headers")
        check(ann["nginx.ingress.kubernetes.io/proxy-buffering"] == "off", f"{case}: {name} streams SSE")
        snippet = ann.get("nginx.ingress.kubernetes.io/configuration-snippet", "")
        check(("$upstream_http_www_authenticate" in snippet) == bool(nginx.get("snippets")), f"{case}: {name} 403 challenge snippet")
        rule = ing["spec"]["rules"][0]
        check(rule["host"] == s["host"], f"{case}: {name} host")
        path = rule["http"]["paths"][0]
        if s.get("stripPrefix"):
            check(ann["nginx.ingress.kubernetes.io/rewrite-target"] == "/$2", f"{case}: {name} rewrite")
            check(path["path"] == f"{s['pathPrefix']}(/|$)(.*)", f"{case}: {name} regex path")
        check(path["backend"]["service"] == {"name": s["backend"]["service"], "port": {"number": s["backend"]["port"]}}, f"{case}: {name} backend")
        check(ing["spec"]["tls"][0]["hosts"] == [s["host"]], f"{case}: {name} tls host")
        if s["host"] != issuer_host:
            check(rules[s["host"]]["http"]["paths"][0]["path"] == "/.well-known/oauth-protected-resource", f"{case}: RFC 9728 metadata on {s['host']}")


def check_echo(case: str, values: dict, docs: list[dict]) -> None:
    echo = find(docs, "Deployment", f"{FULL}-echo")
    check(bool(echo) == values.get("echo", {}).get("enabled", False), f"{case}: echo iff enabled")
    if echo:
        c = echo[0]["spec"]["template"]["spec"]["containers"][0]
        check(c["command"] == ["mcp-echo"] and "--port=3001" in c["args"], f"{case}: mcp-echo on 3001")
        check(c["securityContext"]["readOnlyRootFilesystem"] is True, f"{case}: echo hardened")
        host = values["echo"].get("host") or values["issuer"].split("://", 1)[1]
        check(env_of(c)["MCP_ALLOWED_HOSTS"] == host, f"{case}: echo accepts its public Host")
        one(docs, "Service", f"{FULL}-echo")


def check_config_with_binary(case: str, values: dict, docs: list[dict], toml_text: str, binary: str) -> None:
    """`mcp-authd check-config` on what the pod would run with."""
    if values.get("existingSecret"):
        print(f"  {case}: check-config not run: the secrets live in {values['existingSecret']}, outside the chart")
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        (tmp / "secrets").mkdir()
        (tmp / "data").mkdir()
        for key, b64 in (one(docs, "Secret", FULL).get("data") or {}).items():
            (tmp / "secrets" / key).write_bytes(base64.b64decode(b64))
        text = toml_text.replace("/etc/mcp-authd/secrets", str(tmp / "secrets"))
        (tmp / "mcp-authd.toml").write_text(text)
        dep = one(docs, "Deployment", FULL)
        env = {k: v for k, v in env_of(dep["spec"]["template"]["spec"]["containers"][0]).items() if v is not None}
        env = {k: v.replace("/etc/mcp-authd/secrets", str(tmp / "secrets")) for k, v in env.items()}
        env["MCP_AUTHD__SERVER__DATA_DIR"] = str(tmp / "data")
        env["MCP_AUTHD__SERVER__BIND"] = "127.0.0.1:0"
        env["PATH"] = os.environ.get("PATH", "")
        out = subprocess.run([binary, "--config", str(tmp / "mcp-authd.toml"), "check-config"],
                             env=env, capture_output=True, text=True, timeout=60)
        check(out.returncode == 0, f"{case}: check-config refused the rendered configuration:\n{out.stderr}{out.stdout}")


def must_fail(what: str, values: dict, needle: str) -> None:
    try:
        render(values)
    except helm.HelmError as e:
        check(needle in str(e), f"guard {what}: message {str(e)!r} lacks {needle!r}")
        return
    failures.append(f"guard {what}: rendered without error")


def main() -> int:
    binary = os.environ.get("MCP_AUTHD_BIN", "")
    cases = sorted((CHART / "ci").glob("*-values.yaml"))
    if not cases:
        print("no ci/*-values.yaml", file=sys.stderr)
        return 1
    kinds_seen: set[str] = set()
    for path in cases:
        case = path.name
        values = yaml.safe_load(path.read_text()) or {}
        report = helm.lint(str(CHART), values, strict=False, namespace=NAMESPACE)
        for m in report.get("messages", []):
            if m.get("severity", 0) >= 2:
                failures.append(f"{case}: lint: {m.get('path')}: {m.get('error')}")
        for e in report.get("errors", []) or []:
            failures.append(f"{case}: lint: {e}")
        docs = render(values)
        kinds_seen.update(d["kind"] for d in docs)
        validate_schemas(case, docs)
        check_authd(case, values, docs)
        toml_text = check_config_resources(case, values, docs)
        provider = values.get("protect", {}).get("provider", "traefik")
        if provider == "traefik":
            check_traefik(case, values, docs)
        elif provider == "nginx":
            check_nginx(case, values, docs)
        else:
            check(not find(docs, "IngressRoute") and not find(docs, "Ingress"), f"{case}: no ingress objects with provider none")
        check_echo(case, values, docs)
        if binary:
            check_config_with_binary(case, values, docs, toml_text, binary)
        print(f"  {case}: {len(docs)} manifests ({', '.join(sorted({d['kind'] for d in docs}))})")

    for kind in ["Deployment", "Service", "ConfigMap", "Secret", "PersistentVolumeClaim", "HorizontalPodAutoscaler",
                 "PodDisruptionBudget", "ServiceMonitor", "Middleware", "IngressRoute", "Ingress", "ServiceAccount"]:
        check(kind in kinds_seen, f"no ci values render a {kind}")

    must_fail("embedded with two replicas", {"issuer": "https://a.example.com", "replicaCount": 2},
              "store.type=embedded keeps state in one file on one volume")
    must_fail("embedded with autoscaling", {"issuer": "https://a.example.com", "autoscaling": {"enabled": True}},
              "store.type=embedded keeps state in one file on one volume")
    must_fail("redis replicas without a shared key",
              {"issuer": "https://a.example.com", "replicaCount": 2, "store": {"type": "redis", "redis": {"url": "redis://r:6379"}}},
              "several replicas must sign tokens with one key")
    must_fail("redis without a URL", {"issuer": "https://a.example.com", "store": {"type": "redis"}}, "needs store.redis.url")
    must_fail("no issuer", {}, "issuer is required")
    must_fail("issuer with a path", {"issuer": "https://a.example.com/auth"}, "must be an origin")
    must_fail("unknown store", {"issuer": "https://a.example.com", "store": {"type": "sqlite"}}, "store.type must be")
    must_fail("server without backend", {"issuer": "https://a.example.com", "protect": {"servers": [{"name": "x", "host": "h", "pathPrefix": "/x"}]}},
              "every entry needs name, host, pathPrefix and backend")

    if failures:
        print(f"helm chart: {len(failures)} problem(s):", file=sys.stderr)
        for f in failures:
            print(f"  - {f}", file=sys.stderr)
        return 1
    print(f"helm chart: {len(cases)} value sets linted, rendered, schema-checked and asserted; guards fire"
          + ("" if binary else " (MCP_AUTHD_BIN not set: check-config not run)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
