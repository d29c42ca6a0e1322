"""Both compose files validated by docker-compose (Debian's 1.29 runs ``config`` without an engine)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from tests.ops.tools import REPO_ROOT, require_tool, run

PROD = REPO_ROOT / "docker-compose.prod.yml"
DEV = REPO_ROOT / "docker-compose.yml"
_VARIABLE = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(:?[-?][^}]*)?\}")


def required_variables(path: Path) -> set[str]:
    return {m.group(1) for m in _VARIABLE.finditer(path.read_text()) if (m.group(2) or "").startswith((":?", "?"))}


def env_file(tmp_path: Path, values: dict[str, str]) -> Path:
    path = tmp_path / "test.env"
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    return path


def compose_config(compose: Path, env: Path, tmp_path: Path, *, check: bool = True):
    docker_compose = require_tool("docker-compose", package="docker-compose")
    clean_env = {k: v for k, v in os.environ.items() if not _VARIABLE.fullmatch("${" + k + "}")}
    clean_env["PATH"] = os.environ.get("PATH", "")
    return run([docker_compose, "--project-directory", str(REPO_ROOT), "-f", str(compose), "--env-file", str(env),
                "config"], cwd=tmp_path, env=clean_env, check=check)


@pytest.mark.parametrize("compose", [PROD, DEV], ids=lambda p: p.name)
def test_docker_compose_accepts_the_file(compose: Path, tmp_path: Path) -> None:
    values = {name: "test-value" for name in required_variables(compose)}
    config = yaml.safe_load(compose_config(compose, env_file(tmp_path, values), tmp_path).stdout)
    assert config["services"]


def test_production_refuses_to_start_without_its_secrets(tmp_path: Path) -> None:
    required = required_variables(PROD)
    assert required == {"SECRET_KEY", "POSTGRES_PASSWORD", "REDIS_PASSWORD", "MQTT_PASSWORD", "GRAFANA_PASSWORD", "SERVER_NAME"}
    values = {name: "x" for name in required - {"REDIS_PASSWORD"}}
    result = compose_config(PROD, env_file(tmp_path, values), tmp_path, check=False)
    assert result.returncode != 0
    assert "REDIS_PASSWORD" in result.stderr


def test_every_compose_variable_is_documented_in_env_example() -> None:
    documented = set(re.findall(r"^#?\s*([A-Z_][A-Z0-9_]*)=", (REPO_ROOT / ".env.example").read_text(), re.M))
    used = {m.group(1) for path in (PROD, DEV) for m in _VARIABLE.finditer(path.read_text())}
    assert used - documented == set()


def test_production_services_follow_the_guide(tmp_path: Path) -> None:
    values = {name: "test-value" for name in required_variables(PROD)} | {"PROMETHEUS_RETENTION": "30d"}
    config = yaml.safe_load(compose_config(PROD, env_file(tmp_path, values), tmp_path).stdout)
    services = config["services"]
    assert set(services) == {
        "db", "redis", "mqtt", "backend", "ingest", "worker", "nginx", "prometheus", "alertmanager", "grafana",
        "postgres-exporter", "redis-exporter",
    }
    assert services["db"]["image"].startswith("timescale/timescaledb:")
    db_command = " ".join(services["db"]["command"])
    for setting in ("shared_buffers=256MB", "effective_cache_size=1GB", "max_connections=200",
                    "checkpoint_completion_target=0.9"):
        assert setting in db_command
    redis = services["redis"]["command"]
    assert redis[redis.index("--requirepass") + 1] == "test-value"
    assert ["--maxmemory", "256mb", "--maxmemory-policy", "allkeys-lru", "--appendonly", "yes"] == redis[3:]
    mqtt_volumes = [v if isinstance(v, str) else f"{v['source']}:{v['target']}" for v in services["mqtt"]["volumes"]]
    assert any("deploy/mosquitto" in v and v.endswith("/mosquitto/config") or "/mosquitto/config:" in v for v in mqtt_volumes)
    backend = services["backend"]
    assert "container_name" not in backend and "ports" not in backend, "backend must scale with --scale backend=N"
    assert backend["deploy"]["resources"]["limits"]["memory"]
    assert backend["environment"]["DATABASE_URL"].startswith("postgresql://")
    # one MQTT subscriber: the ingest service, under a fixed client id (not the container hostname)
    assert backend["environment"]["MQTT_API_SUBSCRIBER"] == "false"
    assert services["ingest"]["environment"]["MQTT_CLIENT_ID"] == "digitaltwin-ingest"
    assert "ingest" in " ".join(services["ingest"]["command"])
    # trainings and backtests: queued by the backend, run by the worker service on the same database and folders
    worker = services["worker"]
    assert worker["command"] == ["digitaltwin", "worker"]
    assert "JOBS_IN_PROCESS" not in backend["environment"]  # off with DATABASE_URL: the backend only queues
    assert worker["environment"]["DATABASE_URL"] == backend["environment"]["DATABASE_URL"]
    targets = lambda service: {v["target"] if isinstance(v, dict) else v.split(":")[1] for v in service["volumes"]}  # noqa: E731
    assert {"/app/models", "/app/data/backtests"} <= targets(worker) & targets(backend)
    assert "--storage.tsdb.retention.time=30d" in services["prometheus"]["command"]
    assert services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == "test-value"
    published = {str(p["target"]) for p in services["nginx"]["ports"]}
    assert published == {"80", "443"}
    for name in ("grafana", "prometheus", "alertmanager"):  # docker-compose 1.29 prints "ip:host:container/tcp"
        assert all(str(p).startswith("127.0.0.1:") for p in services[name]["ports"]), name


def test_only_nginx_s_network_is_a_trusted_proxy() -> None:
    """The backends read X-Forwarded-For only from nginx's network (docs/security.md#client-addresses)."""
    config = yaml.safe_load(PROD.read_text())
    services = config["services"]
    subnet = config["networks"]["proxy"]["ipam"]["config"][0]["subnet"]
    assert services["backend"]["environment"]["TRUSTED_PROXIES"] == subnet == "${PROXY_SUBNET:-172.30.250.0/24}"
    assert services["nginx"]["networks"] == ["proxy"]
    assert set(services["backend"]["networks"]) == {"default", "proxy"}
    assert not any("proxy" in (service.get("networks") or []) for name, service in services.items() if name not in ("nginx", "backend"))
    assert "FORWARDED_ALLOW_IPS" not in (REPO_ROOT / "Dockerfile").read_text()  # uvicorn's proxy headers are off anyway
