"""The deployment files are valid without a cluster or a Docker engine: every Kubernetes manifest
against the schemas of a pinned Kubernetes version (bundled with kubernetes-validate, no
network), deploy/compose.yaml coherent, and deploy/nginx/fieldsync.conf accepted by `nginx -t`."""
from __future__ import annotations

import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from .stack import DEPLOY, NGINX_CONF, free_port, nginx_test, render_site_conf, self_signed_cert, write_nginx_conf

# The oldest minor version still in upstream support when these manifests were written; the
# installed kubernetes-validate ships its schemas (kubernetes_validate.utils.all_versions()).
KUBERNETES_VERSION = "1.31.0"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "compose.yaml"
MAX_BODY = "10m"  # SYNC_MAX_ATTACHMENT_BYTES (10 MiB), the largest body the app accepts


def k8s_files() -> list[Path]:
    return sorted(K8S.glob("*.yaml")) + sorted(K8S.glob("*.yml"))


def k8s_resources() -> list[tuple[str, dict]]:
    found = []
    for path in k8s_files():
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                found.append((path.name, doc))
    return found


def by_kind(kind: str) -> list[dict]:
    return [doc for _, doc in k8s_resources() if doc["kind"] == kind]


def test_the_pinned_kubernetes_schemas_are_bundled():
    assert "1.31.0" in kubernetes_validate.utils.all_versions()
    assert len(k8s_files()) >= 6


@pytest.mark.parametrize("path", k8s_files(), ids=lambda p: p.name)
def test_every_manifest_is_valid_for_the_pinned_kubernetes(path):
    resources = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    assert resources, f"{path.name} holds no resource"
    for resource in resources:
        # strict: unknown fields are errors too (a misspelt key would otherwise be ignored).
        # A kind without a schema raises SchemaNotFoundError, which fails the test as well.
        validated = kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
        assert validated == "1.31"


def test_web_worker_beat_shape():
    deployments = {d["metadata"]["name"]: d for d in by_kind("Deployment")}
    assert set(deployments) == {"web", "worker", "beat"}
    web = deployments["web"]["spec"]
    assert web["replicas"] == 3
    (container,) = web["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert deployments["beat"]["spec"]["replicas"] == 1
    assert deployments["beat"]["spec"]["strategy"]["type"] == "Recreate"
    for name, deployment in deployments.items():
        spec = deployment["spec"]
        labels = spec["template"]["metadata"]["labels"]
        assert spec["selector"]["matchLabels"].items() <= labels.items(), name
        for c in spec["template"]["spec"]["containers"]:
            assert c["resources"]["requests"] and c["resources"]["limits"]["memory"], name
            refs = {next(iter(ref)): ref[next(iter(ref))]["name"] for ref in c["envFrom"]}
            assert refs == {"configMapRef": "fieldsync-config", "secretRef": "fieldsync-secrets"}, name
    # The worker scales on its own.
    (hpa,) = by_kind("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "worker"


def test_references_resolve():
    """Services select web pods, the Ingress names the Service and its port, PDBs select pods,
    the ConfigMap exists, and the Secret (kept out of git) is documented."""
    pods = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"] for d in by_kind("Deployment")}
    services = {s["metadata"]["name"]: s for s in by_kind("Service")}
    for service in services.values():
        assert any(service["spec"]["selector"].items() <= labels.items() for labels in pods.values())
    for pdb in by_kind("PodDisruptionBudget"):
        assert any(pdb["spec"]["selector"]["matchLabels"].items() <= labels.items() for labels in pods.values())
    ingresses = by_kind("Ingress")
    assert ingresses
    for ingress in ingresses:
        assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"] == MAX_BODY
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                ports = [p["name"] for p in services[backend["name"]]["spec"]["ports"]]
                assert backend["port"]["name"] in ports
    assert {c["metadata"]["name"] for c in by_kind("ConfigMap")} == {"fieldsync-config"}
    assert "fieldsync-secrets" in (DEPLOY / "README.md").read_text()
    namespaces = {doc["metadata"].get("namespace") for _, doc in k8s_resources() if doc["kind"] != "Namespace"}
    assert namespaces == {"fieldsync"}


def test_only_the_push_route_may_resend_a_post():
    key = "nginx.ingress.kubernetes.io/proxy-next-upstream"
    resending = 0
    for ingress in by_kind("Ingress"):
        resends = "non_idempotent" in ingress["metadata"]["annotations"][key]
        paths = [p["path"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]]
        assert resends == (paths == ["/api/v1/sync/push"]), ingress["metadata"]["name"]
        resending += resends
    # ...and the push route is there, and may be resent to another pod.
    assert resending == 1


# --- compose -----------------------------------------------------------------------------

def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def named_volumes(service: dict) -> set[str]:
    names = set()
    for volume in service.get("volumes", []):
        source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source", "")
        if source and not source.startswith((".", "/", "~")):
            names.add(source)
    return names


def test_compose_services():
    services = compose()["services"]
    assert {"db", "redis", "migrate", "app", "worker", "beat", "nginx"} <= set(services)
    assert services["app"]["deploy"]["replicas"] == 2
    assert services["db"]["image"].startswith("postgis/postgis:15")
    assert services["redis"]["image"].startswith("redis:")
    for name in ("app", "worker", "beat"):
        assert services[name]["image"] == services["migrate"]["image"], name
    assert "gunicorn" in services["app"]["command"] and "deploy/gunicorn.conf.py" in services["app"]["command"]
    assert services["worker"]["command"][:4] == ["celery", "-A", "fieldsync", "worker"]
    assert services["beat"]["command"][:4] == ["celery", "-A", "fieldsync", "beat"]
    assert "deploy" not in services["beat"] or services["beat"]["deploy"].get("replicas", 1) == 1
    # Only nginx is published; the app servers are reached through it.
    assert [s for s, spec in services.items() if spec.get("ports")] == ["nginx"]
    assert "/readyz" in " ".join(services["app"]["healthcheck"]["test"])


def test_compose_dependencies_and_healthchecks_agree():
    services = compose()["services"]
    for name, spec in services.items():
        depends = spec.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on with conditions"
        for target, rule in depends.items():
            assert target in services, f"{name} depends on unknown {target}"
            condition = rule["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target}'s health, which has no check"
            elif condition == "service_completed_successfully":
                assert services[target].get("restart") == "no", f"{target} is a one-shot job"
            else:
                assert condition == "service_started"
    for name in ("app", "worker", "beat"):
        assert services[name]["depends_on"]["db"]["condition"] == "service_healthy"
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_compose_volumes_are_declared_and_used():
    doc = compose()
    declared = set(doc["volumes"])
    used = set().union(*(named_volumes(s) for s in doc["services"].values()))
    assert used == declared
    services = doc["services"]
    # Photos shared by the app servers and the worker (thumbnails); static files from the
    # migrate job to nginx, read-only there.
    assert "media" in named_volumes(services["app"]) and "media" in named_volumes(services["worker"])
    assert "static" in named_volumes(services["migrate"]) and "static" in named_volumes(services["nginx"])
    assert any(v.startswith("static:") and v.endswith(":ro") for v in services["nginx"]["volumes"])
    # Files nginx mounts exist in the repository.
    for volume in services["nginx"]["volumes"]:
        source = volume.split(":", 1)[0]
        if source.startswith("./") and not source.endswith("certs"):
            assert (DEPLOY / source).exists(), source


def test_compose_configures_only_through_the_environment():
    """Every variable the app services read is documented in deploy/README.md."""
    documented = (DEPLOY / "README.md").read_text()
    env = compose()["services"]["app"]["environment"]
    missing = [name for name in env if f"`{name}`" not in documented]
    assert not missing, f"undocumented in deploy/README.md: {missing}"
    interpolated = set(re.findall(r"\$\{(\w+)", COMPOSE.read_text()))
    missing = sorted(name for name in interpolated if f"`{name}`" not in documented)
    assert not missing, f"undocumented in deploy/README.md: {missing}"


def test_every_setting_read_from_the_environment_is_documented():
    settings_py = (DEPLOY.parent / "fieldsync" / "settings.py").read_text()
    read = set(re.findall(r"""(?:os\.environ(?:\.get)?[\[(]|env_(?:bool|int|list)\()\s*["'](\w+)["']""", settings_py))
    gunicorn = set(re.findall(r"""(?:os\.environ\.get\(|_int\()\s*["'](\w+)["']""",
                              (DEPLOY / "gunicorn.conf.py").read_text()))
    documented = (DEPLOY / "README.md").read_text()
    assert {"DATABASE_URL", "DATABASE_REPLICA_URL", "FIELDSYNC_STORAGE", "GUNICORN_WORKERS"} <= read | gunicorn
    missing = sorted(name for name in read | gunicorn if f"`{name}`" not in documented)
    assert not missing, f"undocumented in deploy/README.md: {missing}"


# --- nginx -----------------------------------------------------------------------------------

def test_nginx_accepts_the_site_configuration(tmp_path):
    cert, key = self_signed_cert(tmp_path)
    static = tmp_path / "static"
    static.mkdir()
    site = render_site_conf(upstreams=[f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"],
                            http_port=free_port(), https_port=free_port(), cert=cert, key=key,
                            static_root=static, log_dir=tmp_path / "logs")
    conf = write_nginx_conf(tmp_path / "nginx", site)
    result = nginx_test(conf, tmp_path / "nginx")
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr
    assert "[warn]" not in result.stderr, result.stderr


def test_nginx_configuration_says_what_the_brief_needs():
    text = NGINX_CONF.read_text()
    directives = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    directives = [d for d in directives if d]
    assert f"client_max_body_size {MAX_BODY};" in directives
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in directives
    assert "proxy_next_upstream error timeout http_502;" in directives
    assert "proxy_next_upstream error timeout http_502 non_idempotent;" in directives
    assert re.search(r"server app:8000 max_fails=\d+ fail_timeout=\d+s;", text)
    assert "location /static/ {" in directives
    for header in ("Strict-Transport-Security", "X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy"):
        assert any(d.startswith(f"add_header {header} ") and d.endswith(" always;") for d in directives), header
        assert f"proxy_hide_header {header};" in directives, header
    # non_idempotent only where exactly-once makes a resend harmless: the push location.
    push_block = text.split("location = /api/v1/sync/push {", 1)[1].split("}", 1)[0]
    assert "non_idempotent" in push_block
    assert text.count("non_idempotent;") == 1


def test_the_validator_is_not_vacuous():
    """A misspelt field and a wrong type, each in a copy of the web Deployment, are caught."""
    import copy

    (web,) = [d for d in by_kind("Deployment") if d["metadata"]["name"] == "web"]
    typo = copy.deepcopy(web)
    typo["spec"]["replica"] = typo["spec"].pop("replicas")
    wrong_type = copy.deepcopy(web)
    wrong_type["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["periodSeconds"] = "ten"
    for broken in (typo, wrong_type):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)
