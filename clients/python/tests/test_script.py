"""One source for the write script: the package runs exactly
`publisher/lua/publish.lua`, installed and in a built wheel alike."""

import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import dashboard_gateway
from conftest import PACKAGE_DIR, SCRIPT_SOURCE, history
from dashboard_gateway import Publisher
from dashboard_gateway.script import SCRIPT, SCRIPT_SHA1


def test_the_loaded_script_is_publisher_lua_publish_lua():
    source = SCRIPT_SOURCE.read_bytes()
    assert SCRIPT.encode("utf-8") == source, (
        "dashboard_gateway runs a different script than publisher/lua/publish.lua: "
        "reinstall the package (pip install ./clients/python)"
    )
    assert SCRIPT_SHA1 == hashlib.sha1(source).hexdigest()


def test_the_installed_package_holds_the_scripts_text():
    installed = Path(dashboard_gateway.__file__).parent / "publish.lua"
    assert installed.is_file() and not installed.is_symlink(), (
        f"{installed} should be the installed copy of the script, not the checkout's link "
        "(run the tests against `pip install ./clients/python`, as run-tests.sh does)"
    )
    assert installed.read_bytes() == SCRIPT_SOURCE.read_bytes()


def test_redis_runs_that_script(fresh):
    with Publisher(fresh.url) as publisher:
        publisher.alert({})
    assert fresh.client.script_exists(hashlib.sha1(SCRIPT_SOURCE.read_bytes()).hexdigest()) == [True]
    assert len(history(fresh)) == 1


def test_a_built_wheel_holds_the_scripts_text(tmp_path):
    out = tmp_path / "wheel"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(PACKAGE_DIR)],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1"),
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = out.glob("dashboard_gateway-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        assert "dashboard_gateway/py.typed" in names
        assert archive.read("dashboard_gateway/publish.lua") == SCRIPT_SOURCE.read_bytes()


def test_the_package_is_python_3_9_syntax():
    import ast

    for source in Path(dashboard_gateway.__file__).parent.glob("*.py"):
        ast.parse(source.read_text(encoding="utf-8"), str(source), feature_version=(3, 9))
