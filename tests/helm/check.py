#!/usr/bin/env python3
"""Checks the Helm chart helm/mcp-authd without a cluster (`make helm-lint`).

For every helm/mcp-authd/ci/*-values.yaml: `helm lint --strict` and a render through the Helm v4
SDK (PyPI helm-python-sdk: Helm's own Go code, no helm binary), every manifest validated against
the Kubernetes API schemas of the oldest and newest Kubernetes the chart supports (PyPI
kubernetes-validate, strict: unknown fields are errors), then the facts that matter asserted on
the objects: probes, ports, securityContext, checksums, the rendered mcp-authd.toml, the
Traefik forwardAuth / ingress-nginx auth annotations, PDB/HPA/ServiceMonitor, no Secret with
existingSecret, no secret value outside a Secret. The template guards (embedded store with more
than one replica, …) must refuse with their message.

kubernetes-validate has no schema for custom resources: Traefik's Middleware and IngressRoute
(traefik.io/v1alpha1) and the Prometheus Operator's ServiceMonitor are checked only by the
assertions below (their CRD schemas are other projects' files, not copied here). The run lists
them. A schema dropped into tests/helm/schemas/<group>_<version>_<kind>.json (an openAPIV3Schema
as JSON) is used when present.

With MCP_AUTHD_BIN set to an mcp-authd binary, each rendered mcp-authd.toml is also given to
`mcp-authd check-config`, with the pod's environment, the Secret's files (dummies for an
existingSecret's) and a temporary data directory.

Usage: tests/helm/install.sh, then <venv>/bin/python tests/helm/check.py
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import helm_python as helm
import jsonschema
import kubernetes_validate.utils as kv
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "mcp-authd"
RELEASE, NAMESPACE = "rel", "mcp"
FULLNAME = f"{RELEASE}-mcp-authd"
CONFIG_PATH = "/etc/mcp-authd/mcp-authd.toml"
SECRET_DIR = "/etc/mcp-authd/secrets"
KUBE_VERSIONS = ["1.25", kv.latest_version()]
VERIFY_URL = f"http://{FULLNAME}.{NAMESPACE}.svc.cluster.local:8080/verify"
DEFAULT_HEADERS = ["X-User-Id", "X-User-Name", "X-User-Email", "X-Client-Id", "X-Scope", "Authorization"]
# mcp-authd's own endpoints the ingress must route to it, and what it must never publish.
OWN_ROUTES = ["/.well-known", "/register", "/authorize", "/token", "/revoke", "/introspect", "/jwks",
              "/login", "/callback", "/device_authorization", "/device", "/consent"]
NEVER_ROUTED = ["/verify", "/metrics", "/health", "/ready"]


class Check:
    """Counts assertions; failures are collected, not raised, so one run shows them all."""

    def __init__(self) -> None:
        self.passed = 0
        self.failed: list[str] = []
        self.where = ""

    def __call__(self, ok: bool, what: str) -> bool:
        if ok:
            self.passed += 1
        else:
            self.failed.append(f"{self.where}: {what}")
            print(f"  FAIL {what}")
        return ok

    def eq(self, got, want, what: str) -> bool:
        return self(got == want, f"{what}: got {got!r}, want {want!r}")


check = Check()


def render(values: dict) -> dict[str, str]:
    with helm.Chart.load(str(CHART)) as chart:
        return chart.render(values=values, name=RELEASE, namespace=NAMESPACE, is_install=True)


def objects(rendered: dict[str, str]) -> list[dict]:
    out = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc["__template"] = path
                out.append(doc)
    return out


def find(objs: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objs: list[dict], kind: str, name: str) -> dict:
    found = find(objs, kind, name)
    if not check(len(found) == 1, f"one {kind} {name} (found {len(found)})"):
        return {}
    return found[0]


def merged(values: dict) -> dict:
    with helm.Chart.load(str(CHART)) as chart:
        return chart.merge_values(values)


# ---------------------------------------------------------------------------------------------
# Schema validation

not_validated: dict[str, int] = {}
crd_validated: dict[str, int] = {}

# Custom resources kubernetes-validate has no schema for: the openAPIV3Schema of their CRD, if
# someone put it in tests/helm/schemas/ (none is committed: they are other projects' files).
CRD_SCHEMAS = {
    ("traefik.io/v1alpha1", "Middleware"): "traefik.io_v1alpha1_middleware.json",
    ("traefik.io/v1alpha1", "IngressRoute"): "traefik.io_v1alpha1_ingressroute.json",
}


def strict_schema(node):
    """An API server with field validation Strict (kubectl's default) refuses unknown fields of a
    structural CRD schema: say so in JSON Schema terms."""
    if isinstance(node, dict):
        node = {k: strict_schema(v) for k, v in node.items()}
        if "properties" in node and "additionalProperties" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [strict_schema(v) for v in node]
    return node


def crd_validator(api_version: str, kind: str):
    name = CRD_SCHEMAS.get((api_version, kind))
    if name is None or not (Path(__file__).parent / "schemas" / name).is_file():
        return None
    schema = json.loads((Path(__file__).parent / "schemas" / name).read_text())
    schema.pop("$comment", None)
    return jsonschema.Draft7Validator(strict_schema(schema))


def validate_schemas(objs: list[dict]) -> None:
    for o in objs:
        doc = {k: v for k, v in o.items() if k != "__template"}
        what = f"{o['kind']} {o['metadata']['name']}"
        for version in KUBE_VERSIONS:
            try:
                kv.validate(doc, version, strict=True)
                check.passed += 1
            except kv.SchemaNotFoundError:
                validator = crd_validator(o["apiVersion"], o["kind"])
                if validator is None:
                    key = f"{o['kind']} ({o['apiVersion']})"
                    not_validated[key] = not_validated.get(key, 0) + 1
                else:
                    for e in validator.iter_errors(doc):
                        path = ".".join(str(p) for p in e.path)
                        check(False, f"{what} does not match its CRD schema: {path}: {e.message}")
                    check.passed += 1
                    crd_validated[f"{o['kind']} ({o['apiVersion']})"] = crd_validated.get(f"{o['kind']} ({o['apiVersion']})", 0) + 1
                break
            except kv.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                check(False, f"{what} is not valid Kubernetes {version}: {path}: {e.message}")


# ---------------------------------------------------------------------------------------------
# What every render must show


def container(deploy: dict, name: str) -> dict:
    for c in deploy["spec"]["template"]["spec"]["containers"]:
        if c["name"] == name:
            return c
    check(False, f"container {name} in Deployment {deploy['metadata']['name']}")
    return {}


def hardened(pod_spec: dict, c: dict, what: str) -> None:
    psc, sc = pod_spec.get("securityContext", {}), c.get("securityContext", {})
    check.eq(psc.get("runAsNonRoot"), True, f"{what}: pod runAsNonRoot")
    check.eq(psc.get("seccompProfile", {}).get("type"), "RuntimeDefault", f"{what}: pod seccomp")
    check.eq(sc.get("runAsNonRoot"), True, f"{what}: runAsNonRoot")
    check(isinstance(sc.get("runAsUser"), int) and sc["runAsUser"] > 0, f"{what}: runAsUser is not root")
    check.eq(sc.get("readOnlyRootFilesystem"), True, f"{what}: readOnlyRootFilesystem")
    check.eq(sc.get("allowPrivilegeEscalation"), False, f"{what}: allowPrivilegeEscalation")
    check.eq(sc.get("capabilities", {}).get("drop"), ["ALL"], f"{what}: capabilities.drop")
    check.eq(sc.get("seccompProfile", {}).get("type"), "RuntimeDefault", f"{what}: seccomp")


def common(values: dict, rendered: dict[str, str], objs: list[dict]) -> dict:
    """The facts true of every render; returns the parsed mcp-authd.toml."""
    v = merged(values)
    deploy = one(objs, "Deployment", FULLNAME)
    pod = deploy["spec"]["template"]
    c = container(deploy, "mcp-authd")
    hardened(pod["spec"], c, "mcp-authd")
    check.eq(pod["spec"].get("automountServiceAccountToken"), False, "no service account token")

    check.eq(c["args"], ["--config", CONFIG_PATH, "serve", *v["serveArgs"]], "container args")
    check.eq(c["livenessProbe"]["httpGet"], {"path": "/health", "port": "http"}, "liveness probe")
    check.eq(c["readinessProbe"]["httpGet"], {"path": "/ready", "port": "http"}, "readiness probe")
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    want_ports = {"http": 8080} | ({"grpc": 9191} if v["grpc"]["enabled"] else {})
    check.eq(ports, want_ports, "container ports")

    # The configuration, and that the pod reads it.
    cm = one(objs, "ConfigMap", FULLNAME)
    cfg = tomllib.loads(cm["data"]["mcp-authd.toml"])
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    check(CONFIG_PATH in mounts and mounts[CONFIG_PATH].get("subPath") == "mcp-authd.toml", "config mounted at " + CONFIG_PATH)
    env = {e["name"]: e.get("value") for e in c.get("env", [])}
    check.eq(cfg["server"]["bind"], "0.0.0.0:8080", "server.bind")
    check.eq(env.get("MCP_AUTHD__SERVER__BIND"), cfg["server"]["bind"], "env BIND equals the file's (the image sets it)")
    check.eq(cfg["server"]["data_dir"], v["dataDir"], "server.data_dir")
    check.eq(env.get("MCP_AUTHD__SERVER__DATA_DIR"), v["dataDir"], "env DATA_DIR equals the file's")
    check(v["dataDir"] in mounts and not mounts[v["dataDir"]].get("readOnly"), "a writable volume at data_dir")
    check("/tmp" in mounts, "a writable /tmp")
    check.eq(cfg["server"]["trusted_proxies"], v["config"]["server"]["trusted_proxies"], "server.trusted_proxies")
    check.eq(cfg["store"]["type"], v["store"]["type"], "store.type")
    check.eq(cfg["tokens"]["private_key_file"], f"{SECRET_DIR}/signing-key.pem", "tokens.private_key_file (shared key)")
    check.eq(cfg["verify"]["grpc_bind"], "0.0.0.0:9191" if v["grpc"]["enabled"] else "", "verify.grpc_bind")

    # Checksums: the pod template changes with the configuration and the Secret.
    ann = pod["metadata"].get("annotations", {})
    cm_text = rendered["mcp-authd/templates/configmap.yaml"]
    check.eq(ann.get("checksum/config"), hashlib.sha256(cm_text.encode()).hexdigest(), "checksum/config is the ConfigMap's")
    volumes = {vol["name"]: vol for vol in pod["spec"]["volumes"]}
    existing = v["secrets"]["existingSecret"]
    if existing:
        check(not find(objs, "Secret"), "no Secret rendered with secrets.existingSecret")
        check("checksum/secret" not in ann, "no checksum/secret with existingSecret")
        check.eq(volumes["secrets"]["secret"]["secretName"], existing, "the existing Secret is mounted")
    else:
        secret = one(objs, "Secret", FULLNAME)
        check(re.fullmatch(r"[0-9a-f]{64}", ann.get("checksum/secret", "")) is not None, "checksum/secret")
        check.eq(volumes["secrets"]["secret"]["secretName"], FULLNAME, "the chart's Secret is mounted")
        pem = base64.b64decode(secret.get("data", {}).get("signing-key.pem", "")).decode()
        check("PRIVATE KEY-----" in pem, "the Secret holds a PEM signing key")
        # No secret value anywhere but in the Secret.
        elsewhere = "".join(t for p, t in rendered.items() if not p.endswith("secret.yaml"))
        for key, val in secret.get("data", {}).items():
            plain = base64.b64decode(val).decode()
            check(plain not in elsewhere, f"the value of {key} appears only in the Secret")
    check(SECRET_DIR in mounts and mounts[SECRET_DIR]["readOnly"], f"secrets mounted read-only at {SECRET_DIR}")

    # The store decides strategy, volume and replicas.
    spec = deploy["spec"]
    if v["store"]["type"] == "embedded":
        check.eq(spec["strategy"]["type"], "Recreate", "embedded: Recreate (one process holds the file)")
        check.eq(spec.get("replicas"), 1, "embedded: one replica")
        pvcs = find(objs, "PersistentVolumeClaim")
        if v["store"]["persistence"]["enabled"]:
            check.eq(volumes["data"].get("persistentVolumeClaim", {}).get("claimName"), f"{FULLNAME}-data", "data on the PVC")
            check.eq(len(pvcs), 1, "one PVC")
        else:
            check("emptyDir" in volumes["data"] and not pvcs, "persistence off: emptyDir, no PVC")
    else:
        check.eq(spec["strategy"]["type"], "RollingUpdate", "redis: RollingUpdate")
        check("emptyDir" in volumes["data"] and not find(objs, "PersistentVolumeClaim"), "redis: no PVC")

    # Service: the HTTP port, and gRPC when enabled; it selects the mcp-authd pods only.
    svc = one(objs, "Service", FULLNAME)
    sports = {p["name"]: (p["port"], p["targetPort"]) for p in svc["spec"]["ports"]}
    want = {"http": (8080, "http")} | ({"grpc": (9191, "grpc")} if v["grpc"]["enabled"] else {})
    check.eq(sports, want, "Service ports")
    labels = pod["metadata"]["labels"]
    check(all(labels.get(k) == val for k, val in svc["spec"]["selector"].items()), "Service selects the pods")
    check.eq(deploy["spec"]["selector"]["matchLabels"], svc["spec"]["selector"], "Deployment and Service select alike")

    # PDB, HPA, ServiceMonitor: present exactly when enabled.
    pdbs, hpas, sms = find(objs, "PodDisruptionBudget"), find(objs, "HorizontalPodAutoscaler"), find(objs, "ServiceMonitor")
    check.eq(len(pdbs), 1 if v["podDisruptionBudget"]["enabled"] else 0, "PodDisruptionBudget count")
    check.eq(len(hpas), 1 if v["autoscaling"]["enabled"] else 0, "HorizontalPodAutoscaler count")
    check.eq(len(sms), 1 if v["metrics"]["serviceMonitor"]["enabled"] else 0, "ServiceMonitor count")
    for pdb in pdbs:
        check.eq(pdb["spec"]["selector"]["matchLabels"], svc["spec"]["selector"], "PDB selects the pods")
    for hpa in hpas:
        check.eq(hpa["spec"]["scaleTargetRef"]["name"], FULLNAME, "HPA scales the Deployment")
        check("replicas" not in spec, "no replicas in the Deployment when the HPA owns them")
    for sm in sms:
        ep = sm["spec"]["endpoints"]
        check.eq([(e["port"], e["path"]) for e in ep], [("http", "/metrics")], "ServiceMonitor scrapes /metrics on http")
        check(all(svc["metadata"]["labels"].get(k) == val for k, val in sm["spec"]["selector"]["matchLabels"].items()),
              "ServiceMonitor selects the Service")

    notes = rendered.get("mcp-authd/templates/NOTES.txt", "")
    check("/.well-known/oauth-authorization-server" in notes, "NOTES names the metadata URL")
    return cfg


def protected_servers(values: dict) -> list[dict]:
    """What the chart should protect: `protect`, plus echo when enabled, with defaults."""
    v = merged(values)
    issuer = v["config"]["server"]["issuer"]
    scheme, host = issuer.split("://")[0], issuer.split("://")[1].split("/")[0].split(":")[0]
    out = []
    for p in v["protect"] + ([{"name": "echo", "path": "/echo", "backend": {"service": f"{FULLNAME}-echo", "port": 3001}}]
                             if v["echo"]["enabled"] else []):
        p = copy.deepcopy(p)
        p.setdefault("host", host)
        p.setdefault("stripPrefix", True)
        p.setdefault("endpoint", "/mcp")
        p["url"] = f"{scheme}://{p['host']}{p['path'].rstrip('/')}{p['endpoint']}"
        out.append(p)
    return out


def routes(values: dict, objs: list[dict], cfg: dict) -> None:
    v = merged(values)
    servers = protected_servers(values)
    urls = [r["url"] for r in cfg.get("resources", [])]
    check.eq(urls, [s["url"] for s in servers], "one [[resources]] entry per protected server")
    for r, s in zip(cfg.get("resources", []), servers):
        for key in ("required_scopes", "allowed_users", "allowed_orgs", "allowed_email_domains", "rules"):
            if key in s:
                check.eq(r.get(key), s[key], f"resources[{s['name']}].{key}")
        check(not ({"name", "host", "path", "backend", "stripPrefix"} & r.keys()), f"resources[{s['name']}] has only resource keys")

    custom = v["config"].get("verify", {}).get("headers", {})
    headers = [custom.get("user_id", "X-User-Id"), custom.get("user_name", "X-User-Name"),
               custom.get("user_email", "X-User-Email"), custom.get("client_id", "X-Client-Id"),
               custom.get("scope", "X-Scope"), "Authorization"]
    provider = v["ingress"]["provider"]
    hosts = list(dict.fromkeys([v["config"]["server"]["issuer"].split("://")[1].split("/")[0]] + [s["host"] for s in servers]))

    if provider == "traefik":
        check(not find(objs, "Ingress"), "traefik: no Ingress objects")
        own = one(objs, "IngressRoute", FULLNAME)
        match = own["spec"]["routes"][0]["match"]
        for h in hosts:
            check(f"Host(`{h}`)" in match, f"own routes on host {h}")
        for path in OWN_ROUTES:
            check(f"(`{path}`)" in match, f"own route {path}")
        for path in NEVER_ROUTED:
            check(f"`{path}" not in match, f"{path} is not routed from outside")
        check.eq(own["spec"]["routes"][0]["services"], [{"name": FULLNAME, "port": 8080}], "own routes go to mcp-authd")
        for s in servers:
            mw = one(objs, "Middleware", f"{FULLNAME}-{s['name']}-auth").get("spec", {}).get("forwardAuth", {})
            check.eq(mw.get("address"), VERIFY_URL, f"{s['name']}: forwardAuth address")
            check.eq(mw.get("authResponseHeaders"), headers, f"{s['name']}: authResponseHeaders")
            check.eq(mw.get("trustForwardHeader"), False, f"{s['name']}: trustForwardHeader false (Traefik describes the request)")
            ir = one(objs, "IngressRoute", f"{FULLNAME}-{s['name']}").get("spec", {})
            route = ir["routes"][0]
            check.eq(route["match"], f"Host(`{s['host']}`) && (Path(`{s['path']}`) || PathPrefix(`{s['path']}/`))", f"{s['name']}: match")
            want_mw = [f"{FULLNAME}-{s['name']}-auth"] + ([f"{FULLNAME}-{s['name']}-strip"] if s["stripPrefix"] else [])
            check.eq([m["name"] for m in route["middlewares"]], want_mw, f"{s['name']}: auth first, then strip")
            check.eq(route["services"], [{"name": s["backend"]["service"], "port": s["backend"]["port"]}], f"{s['name']}: backend")
            if s["stripPrefix"]:
                strip = one(objs, "Middleware", f"{FULLNAME}-{s['name']}-strip").get("spec", {})
                check.eq(strip, {"stripPrefix": {"prefixes": [s["path"]]}}, f"{s['name']}: strip middleware")
            tls = v["ingress"]["tls"]["secretName"]
            if tls:
                check.eq(ir.get("tls"), {"secretName": tls}, f"{s['name']}: TLS")
            elif v["ingress"]["traefik"]["certResolver"]:
                check.eq(ir.get("tls"), {"certResolver": v["ingress"]["traefik"]["certResolver"]}, f"{s['name']}: certResolver")
    elif provider == "nginx":
        check(not find(objs, "IngressRoute") and not find(objs, "Middleware"), "nginx: no Traefik objects")
        own = one(objs, "Ingress", FULLNAME)
        check.eq([r["host"] for r in own["spec"]["rules"]], hosts, "own routes on every public host")
        for rule in own["spec"]["rules"]:
            paths = {p["path"]: p["pathType"] for p in rule["http"]["paths"]}
            check.eq(sorted(paths), sorted(OWN_ROUTES), f"own routes on {rule['host']}")
            check(all(p["backend"]["service"]["name"] == FULLNAME for p in rule["http"]["paths"]), "own routes go to mcp-authd")
        check("nginx.ingress.kubernetes.io/auth-url" not in own["metadata"].get("annotations", {}), "own routes are not checked")
        cmname = f"{FULLNAME}-auth-headers"
        if servers:
            cm = one(objs, "ConfigMap", cmname)
            check.eq(cm.get("data"), {"X-Forwarded-Uri": "", "X-Forwarded-Method": "", "X-Forwarded-Host": ""},
                     "the client's X-Forwarded-* are removed from the subrequest")
        for s in servers:
            ing = one(objs, "Ingress", f"{FULLNAME}-{s['name']}")
            a = ing["metadata"]["annotations"]
            check.eq(a.get("nginx.ingress.kubernetes.io/auth-url"), VERIFY_URL, f"{s['name']}: auth-url")
            check.eq(a.get("nginx.ingress.kubernetes.io/auth-response-headers"), ",".join(headers), f"{s['name']}: auth-response-headers")
            check.eq(a.get("nginx.ingress.kubernetes.io/auth-proxy-set-headers"), f"{NAMESPACE}/{cmname}", f"{s['name']}: auth-proxy-set-headers")
            check(not any(k.endswith("auth-snippet") for k in a), f"{s['name']}: no auth-snippet (Critical risk)")
            snippet = a.get("nginx.ingress.kubernetes.io/configuration-snippet")
            if v["ingress"]["nginx"]["stepUpChallenge"]:
                check(snippet is not None and "auth_request_set $mcp_authd_challenge $upstream_http_www_authenticate;" in snippet
                      and 'more_set_headers -s 403 "WWW-Authenticate: $mcp_authd_challenge";' in snippet,
                      f"{s['name']}: the 403 challenge is passed on")
            else:
                check(snippet is None, f"{s['name']}: no snippet unless stepUpChallenge")
            check.eq(a.get("nginx.ingress.kubernetes.io/proxy-buffering"), "off", f"{s['name']}: no buffering (SSE)")
            rule = ing["spec"]["rules"][0]
            check.eq(rule["host"], s["host"], f"{s['name']}: host")
            path = rule["http"]["paths"][0]
            if s["stripPrefix"]:
                check.eq((path["path"], path["pathType"]), (f"{s['path']}(/|$)(.*)", "ImplementationSpecific"), f"{s['name']}: path")
                check.eq(a.get("nginx.ingress.kubernetes.io/rewrite-target"), "/$2", f"{s['name']}: prefix stripped")
            else:
                check.eq((path["path"], path["pathType"]), (s["path"], "Prefix"), f"{s['name']}: path")
                check("nginx.ingress.kubernetes.io/rewrite-target" not in a, f"{s['name']}: path kept")
            check.eq(path["backend"]["service"], {"name": s["backend"]["service"], "port": {"number": s["backend"]["port"]}}, f"{s['name']}: backend")
    else:
        check(not find(objs, "Ingress") and not find(objs, "IngressRoute"), "no ingress.provider: nothing published")


# ---------------------------------------------------------------------------------------------
# What each ci file is about


def scenario(name: str, objs: list[dict], cfg: dict) -> None:
    deploy = one(objs, "Deployment", FULLNAME)
    c = container(deploy, "mcp-authd")
    volumes = {vol["name"]: vol for vol in deploy["spec"]["template"]["spec"]["volumes"]}
    if name == "redis-ha":
        hpa = find(objs, "HorizontalPodAutoscaler")[0]["spec"]
        check.eq((hpa["minReplicas"], hpa["maxReplicas"]), (2, 5), "HPA bounds")
        check.eq(find(objs, "PodDisruptionBudget")[0]["spec"].get("maxUnavailable"), 1, "PDB maxUnavailable")
        st = cfg["store"]
        check.eq(st.get("redis_url"), "rediss://mcp-redis-master.mcp.svc.cluster.local:6379/0", "store.redis_url")
        check.eq(st.get("redis_password_file"), "/etc/mcp-authd/redis/redis-password", "password from the Redis release's Secret")
        check.eq(st.get("redis_ca_file"), "/etc/mcp-authd/redis-ca/ca.crt", "store.redis_ca_file")
        check.eq(volumes["redis-secret"]["secret"]["secretName"], "mcp-redis", "Redis Secret mounted")
        check.eq(deploy["spec"]["strategy"].get("rollingUpdate", {}).get("maxUnavailable"), 0, "rolling update keeps capacity")
    elif name == "traefik":
        gh, oidc = cfg["github"], {o["id"]: o for o in cfg["oidc"]}
        check.eq(gh.get("client_secret_file"), f"{SECRET_DIR}/github-client-secret", "github.client_secret_file")
        check.eq(oidc["corp"].get("client_secret_file"), f"{SECRET_DIR}/oidc-corp-client-secret", "oidc corp secret file")
        check(oidc["pkce-only"].get("client_secret") == "" and "client_secret_file" not in oidc["pkce-only"], "public OIDC client left alone")
        check.eq(cfg["registration"].get("initial_access_token_file"), f"{SECRET_DIR}/registration-initial-access-token", "initial access token file")
        data = find(objs, "Secret", FULLNAME)[0]["data"]
        check.eq(sorted(data), sorted(["signing-key.pem", "github-client-secret", "oidc-corp-client-secret",
                                       "registration-initial-access-token"]), "Secret keys")
    elif name == "nginx":
        check.eq(cfg["local"]["users"][0]["username"], "alice", "local user kept")
    elif name == "existing-secret":
        check.eq(cfg["store"].get("redis_url_file"), "/etc/mcp-authd/redis/url", "whole Redis URL from a Secret")
        check("redis_url" not in cfg["store"], "no redis_url in the file")
        check.eq(cfg["github"].get("client_secret_file"), f"{SECRET_DIR}/github-client-secret", "github secret from the existing Secret")
    elif name == "echo":
        echo = one(objs, "Deployment", f"{FULLNAME}-echo")
        ec = container(echo, "mcp-echo")
        hardened(echo["spec"]["template"]["spec"], ec, "mcp-echo")
        check.eq(ec.get("command"), ["mcp-echo"], "mcp-echo from the same image")
        check.eq(ec["args"][ec["args"].index("--allowed-host") + 1], "mcp.example.com", "echo accepts the public host")
        svc = one(objs, "Service", f"{FULLNAME}-echo")
        check.eq(svc["spec"]["ports"][0]["port"], 3001, "echo Service port")
        check(all(echo["spec"]["template"]["metadata"]["labels"].get(k) == val for k, val in svc["spec"]["selector"].items()), "echo Service selects echo")
        authd_sel = one(objs, "Service", FULLNAME)["spec"]["selector"]
        check(not all(echo["spec"]["template"]["metadata"]["labels"].get(k) == val for k, val in authd_sel.items()),
              "mcp-authd's Service does not select echo")
        check.eq(c["args"][-1], "--demo", "serve --demo")
    elif name == "servicemonitor":
        check.eq(find(objs, "ServiceMonitor")[0]["spec"]["endpoints"][0]["interval"], "15s", "scrape interval")


# ---------------------------------------------------------------------------------------------
# mcp-authd check-config on the rendered file


_generated_key: str | None = None


def a_signing_key() -> str:
    """A PEM key as the chart generates one (for an existingSecret's dummy)."""
    global _generated_key
    if _generated_key is None:
        secret = find(objects(render({})), "Secret", FULLNAME)[0]
        _generated_key = base64.b64decode(secret["data"]["signing-key.pem"]).decode()
    return _generated_key


def check_config(binary: str, objs: list[dict]) -> None:
    cm = one(objs, "ConfigMap", FULLNAME)
    deploy = one(objs, "Deployment", FULLNAME)
    text = cm["data"]["mcp-authd.toml"]
    with tempfile.TemporaryDirectory(prefix="mcp-authd-helm-") as tmp:
        root = Path(tmp)
        for secret in find(objs, "Secret", FULLNAME):
            for key, val in secret.get("data", {}).items():
                f = root / "etc/mcp-authd/secrets" / key
                f.parent.mkdir(parents=True, exist_ok=True)
                f.write_bytes(base64.b64decode(val))
        # Files of Secrets the chart does not create: dummies of the right kind.
        for path in sorted(set(re.findall(r'"(/etc/mcp-authd/[^"]+)"', text))):
            f = root / path.lstrip("/")
            if f.exists() or path == CONFIG_PATH:
                continue
            f.parent.mkdir(parents=True, exist_ok=True)
            if path.endswith(".pem"):
                f.write_text(a_signing_key())
            elif "/redis/" in path and path.endswith("url"):
                f.write_text("rediss://:password@redis.example.internal:6379/0\n")
            else:
                f.write_text("dummy-secret-for-check-config\n")
        (root / "data").mkdir()
        config = root / "mcp-authd.toml"
        config.write_text(text.replace('"/etc/mcp-authd/', f'"{root}/etc/mcp-authd/'))
        env = {k: val for k, val in os.environ.items() if not k.startswith("MCP_AUTHD")}
        for e in container(deploy, "mcp-authd").get("env", []):
            if "value" in e:
                env[e["name"]] = e["value"]
        env["MCP_AUTHD__SERVER__DATA_DIR"] = str(root / "data")
        p = subprocess.run([binary, "-c", str(config), "check-config"], env=env, capture_output=True, text=True, timeout=60)
        out = (p.stdout + p.stderr).strip()
        check(p.returncode == 0 and "configuration is valid" in out, f"mcp-authd check-config: exit {p.returncode}: {out}")


# ---------------------------------------------------------------------------------------------
# Guards: values that must be refused, and the message that must say why

GUARDS = [
    ({"replicaCount": 2}, "store.type embedded keeps all state in one file that one process holds open"),
    ({"autoscaling": {"enabled": True}}, "store.type embedded keeps all state in one file that one process holds open"),
    ({"store": {"type": "redis"}}, "store.type redis: set store.redis.url"),
    ({"store": {"type": "redis", "redis": {"url": "redis://:hunter2@redis:6379"}}}, "store.redis.url must not carry a password"),
    ({"store": {"type": "sqlite"}}, 'store.type "sqlite": must be "embedded" or "redis"'),
    ({"ingress": {"provider": "traefik"}}, "set it to the public URL the ingress serves"),
    ({"config": {"server": {"issuer": "https://a.example/auth"}}, "ingress": {"provider": "traefik"}}, "has a path"),
    ({"protect": [{"name": "x", "path": "/x", "backend": {"service": "x", "port": 80}}]}, "needs ingress.provider"),
    ({"config": {"server": {"issuer": "https://a.example"}}, "ingress": {"provider": "nginx"},
      "protect": [{"name": "x", "path": "/", "backend": {"service": "x", "port": 80}}]}, "must start with / and not be the root"),
    ({"config": {"server": {"issuer": "https://a.example"}}, "ingress": {"provider": "nginx"},
      "protect": [{"name": "x", "path": "/x", "backend": {"service": "x", "port": 80}},
                  {"name": "x", "path": "/y", "backend": {"service": "y", "port": 80}}]}, 'the name "x" is used twice'),
    ({"config": {"github": {"client_id": "Ov23li"}}}, "give its secret in secrets.githubClientSecret"),
    ({"config": {"oidc": [{"id": "corp", "issuer": "https://sso.example", "client_id": "c"}]}}, "secrets.oidcClientSecrets.corp"),
    ({"secrets": {"generateSigningKey": False}}, "no signing key"),
    ({"podDisruptionBudget": {"enabled": True, "minAvailable": 1, "maxUnavailable": 1}}, "not both"),
]


def guards() -> None:
    check.where = "guards"
    print("guards")
    for values, message in GUARDS:
        try:
            render(values)
            check(False, f"{values} rendered; want a failure saying {message!r}")
        except helm.HelmError as e:
            check(message in str(e), f"{values}: failure names the problem: got {e}")
    # The replicas guard with a Redis store and a shared key is not in the way.
    render({"replicaCount": 2, "store": {"type": "redis", "redis": {"url": "redis://redis:6379"}}})
    check.passed += 1


def checksums() -> None:
    """The pod template changes when (and only when) configuration or secrets change."""
    check.where = "checksums"
    print("checksums")
    key = a_signing_key()

    def annotations(values: dict) -> dict:
        d = find(objects(render(values)), "Deployment", FULLNAME)[0]
        return d["spec"]["template"]["metadata"]["annotations"]

    base = {"secrets": {"signingKey": key}}
    a, b = annotations(base), annotations(base)
    check.eq(a, b, "same values, same checksums")
    c = annotations({**base, "config": {"oauth": {"scopes_supported": ["mcp", "admin"], "default_scopes": ["mcp"]}}})
    check(c["checksum/config"] != a["checksum/config"] and c["checksum/secret"] == a["checksum/secret"], "a config change moves checksum/config only")
    d = annotations({"secrets": {"signingKey": key, "githubClientSecret": "other"}})
    check(d["checksum/secret"] != a["checksum/secret"] and d["checksum/config"] == a["checksum/config"], "a secret change moves checksum/secret only")


def rotation(binary: str) -> None:
    """A rotated key: the old one stays in the Secret and in tokens.previous_key_files."""
    check.where = "key rotation"
    print("key rotation")
    old, new = a_signing_key(), find(objects(render({})), "Secret", FULLNAME)[0]["data"]["signing-key.pem"]
    objs = objects(render({"secrets": {"signingKey": base64.b64decode(new).decode(), "previousSigningKeys": [old]}}))
    cfg = tomllib.loads(one(objs, "ConfigMap", FULLNAME)["data"]["mcp-authd.toml"])
    check.eq(cfg["tokens"].get("previous_key_files"), [f"{SECRET_DIR}/previous-signing-key-0.pem"], "tokens.previous_key_files")
    data = one(objs, "Secret", FULLNAME)["data"]
    check.eq(base64.b64decode(data["previous-signing-key-0.pem"]).decode(), old, "the old key kept in the Secret")
    check.eq(data["signing-key.pem"], new, "the given key signs")
    if binary:
        check_config(binary, objs)


def main() -> int:
    helm.disable_logging()
    binary = os.environ.get("MCP_AUTHD_BIN", "")
    if binary and not os.access(binary, os.X_OK):
        print(f"MCP_AUTHD_BIN={binary} is not an executable", file=sys.stderr)
        return 1
    files = sorted((CHART / "ci").glob("*-values.yaml"))
    if not files:
        print(f"no ci values files in {CHART / 'ci'}", file=sys.stderr)
        return 1
    for f in files:
        name = f.name.removesuffix("-values.yaml")
        check.where = f"ci/{f.name}"
        print(check.where)
        values = yaml.safe_load(f.read_text()) or {}
        report = helm.lint(str(CHART), values, strict=True, namespace=NAMESPACE)
        for m in report["messages"]:
            # INFO (severity 1) is advice ("icon is recommended"); warnings and errors fail.
            check(m["severity"] < 2, f"helm lint: {m['path']}: {m['error']}")
        for e in report["errors"]:
            check(False, f"helm lint: {e}")
        try:
            rendered = render(values)
        except helm.HelmError as e:
            check(False, f"render failed: {e}")
            continue
        objs = objects(rendered)
        validate_schemas(objs)
        cfg = common(values, rendered, objs)
        routes(values, objs, cfg)
        scenario(name, objs, cfg)
        if binary:
            check_config(binary, objs)
    guards()
    checksums()
    rotation(binary)

    print()
    print(f"schemas: Kubernetes {', '.join(KUBE_VERSIONS)} (kubernetes-validate {kv.__version__ if hasattr(kv, '__version__') else ''}, strict)")
    for kind, n in sorted(crd_validated.items()):
        print(f"validated against its CRD schema (tests/helm/schemas): {kind} x{n}")
    for kind, n in sorted(not_validated.items()):
        print(f"not schema-validated (a custom resource; its fields are asserted instead): {kind} x{n}")
    if not binary:
        print("mcp-authd check-config skipped: set MCP_AUTHD_BIN to an mcp-authd binary to run it on each rendered config")
    for f in check.failed:
        print(f"FAILED {f}")
    print(f"{check.passed} passed, {len(check.failed)} failed")
    return 1 if check.failed else 0


if __name__ == "__main__":
    sys.exit(main())
