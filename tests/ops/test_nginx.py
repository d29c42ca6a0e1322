"""``nginx -t`` on deploy/nginx/nginx.conf with a self-signed certificate made here."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.ops.tools import DEPLOY, require_tool, run

CONF = DEPLOY / "nginx" / "nginx.conf"
SERVER_NAME = "twin.example.test"


@pytest.fixture
def nginx_prefix(tmp_path: Path) -> Path:
    """A prefix laid out like the container's /etc/nginx: nginx.conf, mime.types, ssl/{cert,key}.pem."""
    require_tool("openssl", package="openssl")
    conf = tmp_path / "conf"
    (conf / "ssl").mkdir(parents=True)
    (tmp_path / "logs").mkdir()
    shutil.copy(CONF, conf / "nginx.conf")
    # what the nginx image does at start: envsubst of templates/*.template into conf.d/
    (conf / "conf.d").mkdir()
    for template in (DEPLOY / "nginx" / "templates").glob("*.template"):
        text = template.read_text().replace("${SERVER_NAME}", SERVER_NAME)
        (conf / "conf.d" / template.name.removesuffix(".template")).write_text(text)
    mime = Path("/etc/nginx/mime.types")
    if not mime.exists():
        pytest.skip("/etc/nginx/mime.types missing (Debian package: nginx-common)")
    shutil.copy(mime, conf / "mime.types")
    run([
        "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
        "-keyout", str(conf / "ssl" / "key.pem"), "-out", str(conf / "ssl" / "cert.pem"),
    ])
    return tmp_path


def test_nginx_accepts_the_configuration(nginx_prefix: Path) -> None:
    nginx = require_tool("nginx", package="nginx")
    result = run([nginx, "-t", "-p", str(nginx_prefix), "-c", str(nginx_prefix / "conf" / "nginx.conf")])
    assert "test is successful" in result.stderr


def test_nginx_refuses_it_without_the_certificate(nginx_prefix: Path) -> None:
    """The check can fail: without nginx/ssl/cert.pem nginx -t rejects the configuration."""
    nginx = require_tool("nginx", package="nginx")
    (nginx_prefix / "conf" / "ssl" / "cert.pem").unlink()
    result = run([nginx, "-t", "-p", str(nginx_prefix), "-c", str(nginx_prefix / "conf" / "nginx.conf")], check=False)
    assert result.returncode != 0
    assert "cert.pem" in result.stderr


def test_the_guide_s_proxy_settings_are_in_effect(nginx_prefix: Path) -> None:
    """The effective configuration (``nginx -T``) has TLS with HTTP/2, gzip, HSTS, X-Forwarded-For and 10 MB bodies."""
    nginx = require_tool("nginx", package="nginx")
    dump = run([nginx, "-T", "-p", str(nginx_prefix), "-c", str(nginx_prefix / "conf" / "nginx.conf")]).stdout
    lines = {re.sub(r"\s+", " ", line.strip()) for line in dump.splitlines()}
    for expected in (
        "listen 443 ssl http2 default_server;",
        "ssl_certificate ssl/cert.pem;",
        "ssl_certificate_key ssl/key.pem;",
        "gzip on;",
        "client_max_body_size 10m;",
        'add_header Strict-Transport-Security "max-age=63072000; includeSubDomains" always;',
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "proxy_set_header X-Request-ID $request_id;",
        "return 301 https://$server_name$request_uri;",
    ):
        assert expected in lines, expected


def test_only_the_configured_server_name_is_served(nginx_prefix: Path) -> None:
    """The API and the HTTPS redirect sit in the servers named SERVER_NAME; the default servers
    (any other Host header) close the connection or refuse the TLS handshake, and no redirect
    is built from the Host header."""
    nginx = require_tool("nginx", package="nginx")
    dump = run([nginx, "-T", "-p", str(nginx_prefix), "-c", str(nginx_prefix / "conf" / "nginx.conf")]).stdout
    text = re.sub(r"#[^\n]*", "", dump)
    servers = re.findall(r"server \{(.*?)\n    \}", text, re.S)
    named = [s for s in servers if "include conf.d/server_name.conf;" in s]
    assert f"server_name {SERVER_NAME};" in text  # the rendered include (nginx -T lists included files)
    default = [s for s in servers if "default_server" in s]
    assert len(named) == 2 and all("default_server" not in s for s in named)
    assert any("proxy_pass $backend" in s for s in named)
    assert len(default) == 2 and all("server_name _;" in s and "proxy_pass" not in s for s in default)
    assert all("return 444;" in s or "ssl_reject_handshake on;" in s for s in default)
    assert "$host$request_uri" not in text and "return 301 https://$server_name$request_uri;" in text
