"""Run by tests/packaging/run.sh with the python of a fresh venv, outside the repository, where
only the built wheel is installed: the package must use its bundled library and binary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mcprouter
from mcprouter import _cli, _ffi

site = Path(mcprouter.__file__).resolve().parent
assert "site-packages" in site.parts, f"not the installed package: {site}"
assert "MCPROUTER_LIB" not in os.environ, "the bundled library must be found without MCPROUTER_LIB"
lib = Path(_ffi.load()._name).resolve()
assert lib.parent == site / "_native" / _ffi.platform_tag(), f"loaded {lib}, not the bundled library"
binary = _cli.binary()
assert binary is not None and binary.parent == lib.parent, f"binary: {binary}"

# A routed call through the library, with the bundled binary's test server as the backend.
yaml = f"backends:\n  - name: alpha\n    command: {json.dumps(str(binary))}\n    args: [test-server, --name, alpha]\n"
with mcprouter.Router.from_yaml(yaml) as router, router.session("wheel") as s:
    s.initialize()
    names = [t["name"] for t in s.request("tools/list")["tools"]]
    assert "echo" in names, names
    out = s.request("tools/call", {"name": "echo", "arguments": {"message": "from the wheel"}})
    assert "from the wheel" in json.dumps(out), out

# The same backend described as an MCP host would (.mcp.json), read by the library.
mcp_json = Path("mcp.json")
mcp_json.write_text(json.dumps({"mcpServers": {"beta": {"command": str(binary), "args": ["test-server", "--name", "beta"]}}}))
with mcprouter.Router.from_file(str(mcp_json)) as router, router.session() as s:
    s.initialize()
    out = s.request("tools/call", {"name": "whoami", "arguments": {}})
    assert "beta" in json.dumps(out), out

# The console script and `python -m mcprouter` run the bundled binary.
script = Path(sys.executable).parent / "mcprouter"
help_text = subprocess.run([str(script), "--help"], check=True, capture_output=True, text=True).stdout
assert "usage: mcprouter" in help_text, help_text
version = subprocess.run([sys.executable, "-m", "mcprouter", "version"], check=True, capture_output=True, text=True)
assert version.stdout.strip() == f"mcprouter {mcprouter.__version__}", version.stdout
check = subprocess.run([str(script), "check", "--config", str(mcp_json)], capture_output=True, text=True)
assert check.returncode == 0 and "beta" in check.stdout and "ready" in check.stdout, (check.stdout, check.stderr)
print(f"wheel ok: {lib.name} and {binary.name} from {lib.parent}")
