"""Build hook: the package's publish.lua is a symlink to the repository's
publisher/lua/publish.lua (the one source of the script, shared with the Rust
crate). Refuse to build a package without the script's text, and always put
the text itself, not a link, into the build."""

import os

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "src", "dashboard_gateway", "publish.lua")


class build_py_with_script(build_py):
    def run(self) -> None:
        if not os.path.isfile(SCRIPT):
            raise SystemExit(
                "dashboard_gateway/publish.lua does not resolve to "
                "publisher/lua/publish.lua: build from a checkout of the whole "
                "repository (pip >= 21.3 builds in place; older pip copies the "
                "package alone)"
            )
        super().run()
        target = os.path.join(self.build_lib, "dashboard_gateway", "publish.lua")
        if os.path.islink(target):
            os.unlink(target)
        with open(SCRIPT, "rb") as src, open(target, "wb") as dst:
            dst.write(src.read())


setup(cmdclass={"build_py": build_py_with_script})
