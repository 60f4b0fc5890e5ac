"""The write script, `publish.lua`: the one source shared with the Rust crate.

In a checkout, `dashboard_gateway/publish.lua` is a link to the repository's
`publisher/lua/publish.lua`; the build puts the file's text into the package.
See the script's header for its KEYS and ARGV.
"""

import hashlib
from importlib import resources

#: The Lua source, byte for byte as in `publisher/lua/publish.lua`.
SCRIPT: str = (
    resources.files(__package__).joinpath("publish.lua").read_bytes().decode("utf-8")
)
#: What `EVALSHA` calls it.
SCRIPT_SHA1: str = hashlib.sha1(SCRIPT.encode("utf-8")).hexdigest()
