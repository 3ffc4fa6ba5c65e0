"""Interop: ``mcprouter serve --http --tls-cert --tls-key`` (HTTPS) with the official Python
MCP SDK (``mcp`` 2.3.0) as the client, over Streamable HTTP and over the legacy HTTP+SSE
endpoints.

A CA and a server certificate for ``127.0.0.1`` / ``localhost`` are made at test time with
the ``openssl`` command (a missing ``openssl`` fails the test). The client trusts that CA
only: certificate verification stays on, and a client that does not trust it is refused.
"""

from __future__ import annotations

import re
import ssl
import subprocess
import tempfile
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from test_python_sdk import router_binary, text_of, yaml_str

TIMEOUT_S = 30


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certificates(d: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate it signed for 127.0.0.1 and localhost."""
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=mcprouter test CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
            cwd=d)  # fmt: skip
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost", cwd=d)  # fmt: skip
    (d / "ext.cnf").write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
    )
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf", cwd=d)  # fmt: skip
    return d / "ca.pem", d / "server.pem", d / "server.key"


def start_gateway(d: Path, cert: Path, key: Path) -> tuple[subprocess.Popen[str], str, str]:
    binary = router_binary()
    cfg = d / "gateway.yaml"
    cfg.write_text(
        "backends:\n"
        f"  - name: alpha\n    command: {yaml_str(str(binary))}\n    args: [test-server, --name, alpha]\n"
    )
    proc = subprocess.Popen(
        [str(binary), "serve", "--config", str(cfg), "--http", "127.0.0.1:0",
         "--tls-cert", str(cert), "--tls-key", str(key)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    url = None
    for line in proc.stderr:
        if m := re.search(r"serving MCP on (\S+)", line):
            url = m.group(1)
        if m := re.search(r"legacy HTTP\+SSE clients: (\S+)", line):
            assert url is not None
            return proc, url, m.group(1)
    proc.wait()
    raise AssertionError(f"the gateway exited with {proc.returncode} before listening")


@pytest.mark.anyio
async def test_https_with_a_verifying_client() -> None:
    with tempfile.TemporaryDirectory() as t:
        d = Path(t)
        ca, cert, key = make_certificates(d)
        proc, url, sse_url = start_gateway(d, cert, key)
        try:
            assert url.startswith("https://127.0.0.1:") and sse_url.startswith("https://"), (url, sse_url)
            trust = ssl.create_default_context(cafile=str(ca))

            with anyio.fail_after(TIMEOUT_S):
                async with httpx2.AsyncClient(verify=trust, timeout=TIMEOUT_S) as http:
                    async with streamable_http_client(url, http_client=http) as (read, write):
                        async with ClientSession(read, write) as session:
                            await session.initialize()
                            names = {t.name for t in (await session.list_tools()).tools}
                            assert "echo" in names, names
                            echo = await session.call_tool("echo", {"message": "over tls"})
                            assert text_of(echo) == "over tls"

                def factory(headers=None, timeout=None, auth=None) -> httpx2.AsyncClient:
                    return httpx2.AsyncClient(verify=trust, headers=headers, timeout=timeout, auth=auth)

                async with sse_client(sse_url, httpx_client_factory=factory) as (read, write):
                    async with ClientSession(read, write) as session:
                        await session.initialize()
                        echo = await session.call_tool("echo", {"message": "legacy over tls"})
                        assert text_of(echo) == "legacy over tls"

                # Verification is real: a client that does not trust the CA is refused.
                async with httpx2.AsyncClient(timeout=TIMEOUT_S) as untrusting:
                    with pytest.raises(httpx2.ConnectError):
                        await untrusting.get(url)
                # And plain HTTP on the TLS port gets no answer.
                async with httpx2.AsyncClient(timeout=TIMEOUT_S) as plain:
                    with pytest.raises(httpx2.HTTPError):
                        await plain.post(url.replace("https://", "http://"), json={})
        finally:
            proc.terminate()
            assert proc.wait(timeout=30) == 0, "the gateway stops cleanly on SIGTERM"
