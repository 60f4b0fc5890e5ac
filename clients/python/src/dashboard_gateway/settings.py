"""Configuration: the environment variables of the Rust `publisher` CLI, read
once into a checked, immutable `Settings`.

| variable                | default                  | meaning                                        |
|-------------------------|--------------------------|------------------------------------------------|
| `REDIS_URL`             | `redis://127.0.0.1:6379` | `redis://`, `rediss://` (TLS), `unix://`       |
| `REDIS_SENTINELS`       | unset                    | Sentinels: `host:port` or `redis(s)://` URLs   |
| `REDIS_SENTINEL_MASTER` | unset                    | the master's name (or `redis(s)://u:p@name`)   |
| `REDIS_TLS_CA_FILE`     | unset (system roots)     | PEM CAs to trust for `rediss://`               |
| `REDIS_TLS_CERT_FILE`   | unset                    | PEM client certificate (mutual TLS)            |
| `REDIS_TLS_KEY_FILE`    | unset                    | its PEM private key                            |
| `CHANNEL_PREFIX`        | `ws`                     | key and channel namespace (= gateways')        |
| `HISTORY_SIZE`          | `10000`                  | events kept for resume (at least 1)            |
| `HISTORY_TTL_SECS`      | `300`                    | age limit of the history (0: size only)        |
| `MAX_EVENT_BYTES`       | `65536`                  | largest encoded envelope, 256..=16777216       |
| `REDIS_POOL_SIZE`       | `50`                     | Python only: Redis connections in use at once  |
| `REDIS_POOL_TIMEOUT_SECS` | `10`                   | Python only: longest wait for a free one     |
| `STATE_KEYS`            | see `state`              | `type=field[+field...]`, comma separated       |
| `STATE_TOMBSTONES`      | see `state`              | `type=field:value`, comma separated            |
| `STATE_MAX_KEYS`        | `100000`                 | keys kept per type, 1..=100000000              |
| `STATE_TTL_SECS`        | `604800`                 | age limit of a key, 0 (none)..=31622400        |

Empty variables count as unset, as for the gateway, except `STATE_KEYS` and
`STATE_TOMBSTONES`: set and empty (or `none`), they mean no rules. The pool settings are
the Python package's own (the Rust crate multiplexes one connection): a
publish beyond `REDIS_POOL_SIZE` at once waits for a connection, up to
`REDIS_POOL_TIMEOUT_SECS`, then raises `PoolExhaustedError`. The Redis
variables mean what they mean to the Rust CLI (`publisher/src/config.rs`),
checked the same way at start: at most one of `REDIS_URL` and
`REDIS_SENTINELS`, TLS files that exist and hold PEM, a certificate only with
its key, TLS files only when some address is `rediss://`. `REDIS_CLUSTER_NODES` is refused: Redis Cluster is not
supported from Python.
"""

import os
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple
from urllib.parse import unquote, urlsplit

from .errors import ConfigError
from .state import (
    DEFAULT_STATE_KEYS,
    DEFAULT_STATE_MAX_KEYS,
    DEFAULT_STATE_TOMBSTONES,
    DEFAULT_STATE_TTL_SECS,
    Keying,
)
from .wire import rust_debug_str

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"
DEFAULT_CHANNEL_PREFIX = "ws"
DEFAULT_HISTORY_SIZE = 10_000
DEFAULT_HISTORY_TTL_SECS = 300
DEFAULT_MAX_EVENT_BYTES = 65_536
#: redis-py's own default for a blocking pool; Redis serves one command at a
#: time, so more connections buy a publisher little.
DEFAULT_POOL_SIZE = 50
#: Long enough for a burst of thousands of single publishes to drain
#: through the pool; short enough that an overloaded caller hears of it.
DEFAULT_POOL_TIMEOUT_SECS = 10.0
MAX_POOL_SIZE = 10_000
MAX_POOL_TIMEOUT_SECS = 3600.0
MIN_MAX_EVENT_BYTES = 256
#: The Rust CLI's bounds of STATE_MAX_KEYS and STATE_TTL_SECS (366 days):
#: past them a value is a typo.
MAX_STATE_MAX_KEYS = 100_000_000
MAX_STATE_TTL_SECS = 366 * 24 * 3600
MAX_MAX_EVENT_BYTES = 16 * 1024 * 1024

_PREFIX = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----\s+[A-Za-z0-9+/=\s]+?-----END CERTIFICATE-----"
)
_PRIVATE_KEY = re.compile(
    rb"-----BEGIN (RSA |EC |ENCRYPTED )?PRIVATE KEY-----\s+[A-Za-z0-9+/=\s]+?"
    rb"-----END (RSA |EC |ENCRYPTED )?PRIVATE KEY-----"
)


class Auth(NamedTuple):
    """An ACL user and password (either may be absent). Its repr hides the password."""

    username: Optional[str] = None
    password: Optional[str] = None

    def __repr__(self) -> str:
        shown = "None" if self.password is None else "'***'"
        return f"Auth(username={self.username!r}, password={shown})"


class SentinelTarget(NamedTuple):
    """`REDIS_SENTINELS` + `REDIS_SENTINEL_MASTER`, parsed as the Rust CLI does."""

    sentinels: Tuple[Tuple[str, int], ...]
    sentinel_tls: bool
    sentinel_auth: Auth
    master: str
    master_tls: bool
    master_auth: Auth
    shown: str


@dataclass(frozen=True, repr=False)
class Settings:
    """Where and how to publish. Checked on construction (`ConfigError`).

    `redis_url` defaults to `redis://127.0.0.1:6379` unless `redis_sentinels`
    is given (then it must stay unset)."""

    redis_url: Optional[str] = None
    channel_prefix: str = DEFAULT_CHANNEL_PREFIX
    history_size: int = DEFAULT_HISTORY_SIZE
    history_ttl_secs: int = DEFAULT_HISTORY_TTL_SECS
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    redis_sentinels: Tuple[str, ...] = ()
    redis_sentinel_master: Optional[str] = None
    redis_tls_ca_file: Optional[str] = None
    redis_tls_cert_file: Optional[str] = None
    redis_tls_key_file: Optional[str] = None
    pool_size: int = DEFAULT_POOL_SIZE
    pool_timeout_secs: float = DEFAULT_POOL_TIMEOUT_SECS
    state_keys: str = DEFAULT_STATE_KEYS
    state_tombstones: str = DEFAULT_STATE_TOMBSTONES
    state_max_keys: int = DEFAULT_STATE_MAX_KEYS
    state_ttl_secs: int = DEFAULT_STATE_TTL_SECS

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        sentinels = self.redis_sentinels
        if isinstance(sentinels, str):
            sentinels = sentinels.split(",")
        if not isinstance(sentinels, (list, tuple)) or not all(
            isinstance(s, str) for s in sentinels
        ):
            raise ConfigError("REDIS_SENTINELS must be a list of host:port or redis(s):// URLs")
        set_("redis_sentinels", tuple(s.strip() for s in sentinels if s.strip()))
        for name in ("redis_sentinel_master", "redis_tls_ca_file", "redis_tls_cert_file",
                     "redis_tls_key_file"):
            value = getattr(self, name)
            if isinstance(value, os.PathLike):
                value = os.fspath(value)
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"{name.upper()} must be a string, not {type(value).__name__}")
            set_(name, value.strip() if value is not None and value.strip() else None)

        # The Rust CLI's order of checks (RedisConfig::target).
        if self.redis_url is not None and self.redis_sentinels:
            raise ConfigError(
                "set only one of REDIS_URL, REDIS_CLUSTER_NODES and REDIS_SENTINELS "
                "(found REDIS_URL and REDIS_SENTINELS)"
            )
        if self.redis_sentinel_master is not None and not self.redis_sentinels:
            raise ConfigError("REDIS_SENTINEL_MASTER is set but REDIS_SENTINELS is not")
        if self.redis_url is None and not self.redis_sentinels:
            set_("redis_url", DEFAULT_REDIS_URL)
        self._check_tls_files()

        sentinel: Optional[SentinelTarget] = None
        if self.redis_sentinels:
            sentinel = _sentinel(self.redis_sentinels, self.redis_sentinel_master)
            uses_tls = sentinel.sentinel_tls or sentinel.master_tls
        else:
            if not isinstance(self.redis_url, str) or urlsplit(self.redis_url).scheme not in (
                "redis",
                "rediss",
                "unix",
            ):
                # The URL itself is not echoed: it may hold a password.
                raise ConfigError(
                    "REDIS_URL is not a valid Redis URL (expected redis://host:port, "
                    "rediss://host:port or unix:///path)"
                )
            uses_tls = urlsplit(self.redis_url).scheme == "rediss"
        set_("_sentinel", sentinel)
        if not uses_tls:
            for var, path in (
                ("REDIS_TLS_CA_FILE", self.redis_tls_ca_file),
                ("REDIS_TLS_CERT_FILE", self.redis_tls_cert_file),
            ):
                if path is not None:
                    raise ConfigError(
                        f"{var} is set but no Redis address uses TLS (use rediss:// URLs)"
                    )

        if not isinstance(self.channel_prefix, str) or not _PREFIX.fullmatch(self.channel_prefix):
            shown = (
                rust_debug_str(self.channel_prefix)
                if isinstance(self.channel_prefix, str)
                else repr(self.channel_prefix)
            )
            raise ConfigError(
                f"CHANNEL_PREFIX {shown} may only contain letters, digits, '_', '-' and '.'"
                " (1 to 64 of them)"
            )
        _check_int("HISTORY_SIZE", self.history_size, 1, None)
        _check_int("HISTORY_TTL_SECS", self.history_ttl_secs, 0, None)
        _check_int(
            "MAX_EVENT_BYTES", self.max_event_bytes, MIN_MAX_EVENT_BYTES, MAX_MAX_EVENT_BYTES
        )
        _check_int("REDIS_POOL_SIZE", self.pool_size, 1, MAX_POOL_SIZE)
        timeout = self.pool_timeout_secs
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            or not 0 < timeout <= MAX_POOL_TIMEOUT_SECS
        ):
            raise ConfigError(
                f"REDIS_POOL_TIMEOUT_SECS must be a number of seconds above 0 and at most "
                f"{MAX_POOL_TIMEOUT_SECS:g} (got {timeout!r})"
            )
        set_("pool_timeout_secs", float(timeout))
        for name in ("state_keys", "state_tombstones"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(
                    f"{name.upper()} must be a string, not {type(getattr(self, name)).__name__}"
                )
        set_("_keying", Keying.parse(self.state_keys, self.state_tombstones))
        _check_int("STATE_MAX_KEYS", self.state_max_keys, 1, MAX_STATE_MAX_KEYS)
        _check_int("STATE_TTL_SECS", self.state_ttl_secs, 0, MAX_STATE_TTL_SECS)

    def _check_tls_files(self) -> None:
        if self.redis_tls_ca_file is not None:
            _read_pem("REDIS_TLS_CA_FILE", self.redis_tls_ca_file, _CERTIFICATE,
                      "holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
        cert, key = self.redis_tls_cert_file, self.redis_tls_key_file
        if (cert is None) != (key is None):
            raise ConfigError(
                "REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE go together "
                "(a client certificate and its key)"
            )
        if cert is not None and key is not None:
            _read_pem("REDIS_TLS_CERT_FILE", cert, _CERTIFICATE,
                      "holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
            _read_pem("REDIS_TLS_KEY_FILE", key, _PRIVATE_KEY,
                      "holds no PEM private key (-----BEGIN PRIVATE KEY-----)")

    @property
    def sentinel(self) -> Optional[SentinelTarget]:
        """The parsed Sentinel target, or None when publishing to `redis_url`."""
        return self._sentinel  # type: ignore[attr-defined,no-any-return]

    @property
    def keying(self) -> Keying:
        """`state_keys` and `state_tombstones`, parsed: how events are keyed."""
        return self._keying  # type: ignore[attr-defined,no-any-return]

    def tls_options(self) -> Dict[str, Any]:
        """redis-py keyword arguments for a TLS connection with these files:
        certificate and host name always verified (as the Rust CLI does)."""
        options: Dict[str, Any] = {"ssl_cert_reqs": "required", "ssl_check_hostname": True}
        if self.redis_tls_ca_file is not None:
            options["ssl_ca_certs"] = self.redis_tls_ca_file
        if self.redis_tls_cert_file is not None:
            options["ssl_certfile"] = self.redis_tls_cert_file
            options["ssl_keyfile"] = self.redis_tls_key_file
        return options

    @classmethod
    def from_env(
        cls, environ: Optional[Mapping[str, str]] = None, **overrides: Any
    ) -> "Settings":
        """Reads the variables above from `environ` (default `os.environ`);
        keyword `overrides` (e.g. `channel_prefix="staging"`) win over them."""
        env = os.environ if environ is None else environ

        def var(name: str) -> Optional[str]:
            value = env.get(name)
            return value.strip() if value is not None and value.strip() else None

        if var("REDIS_CLUSTER_NODES") is not None:
            raise ConfigError(
                "REDIS_CLUSTER_NODES is set, but the Python package does not read it: "
                "Redis Cluster is not supported from Python (use REDIS_URL or "
                "REDIS_SENTINELS, or build a redis-py client yourself and pass it as "
                "client=...)"
            )
        values: Dict[str, Any] = {}
        for field, name in (
            ("redis_url", "REDIS_URL"),
            ("channel_prefix", "CHANNEL_PREFIX"),
            ("redis_sentinels", "REDIS_SENTINELS"),
            ("redis_sentinel_master", "REDIS_SENTINEL_MASTER"),
            ("redis_tls_ca_file", "REDIS_TLS_CA_FILE"),
            ("redis_tls_cert_file", "REDIS_TLS_CERT_FILE"),
            ("redis_tls_key_file", "REDIS_TLS_KEY_FILE"),
        ):
            if var(name) is not None:
                values[field] = var(name)
        # Set and empty is a value here: no rules (as `none`).
        for field, name in (("state_keys", "STATE_KEYS"), ("state_tombstones", "STATE_TOMBSTONES")):
            if env.get(name) is not None:
                values[field] = env[name]
        for field, name in (
            ("history_size", "HISTORY_SIZE"),
            ("history_ttl_secs", "HISTORY_TTL_SECS"),
            ("max_event_bytes", "MAX_EVENT_BYTES"),
            ("pool_size", "REDIS_POOL_SIZE"),
            ("state_max_keys", "STATE_MAX_KEYS"),
            ("state_ttl_secs", "STATE_TTL_SECS"),
        ):
            raw = var(name)
            if raw is not None:
                values[field] = _parse_int(name, raw)
        raw = var("REDIS_POOL_TIMEOUT_SECS")
        if raw is not None:
            values["pool_timeout_secs"] = _parse_seconds("REDIS_POOL_TIMEOUT_SECS", raw)
        values.update(overrides)
        return cls(**values)

    def __repr__(self) -> str:
        if self.sentinel is not None:
            target = f"redis_sentinels={self.redacted_url()!r}"
        else:
            target = f"redis_url={self.redacted_url()!r}"
        files = "".join(
            f", {name}={getattr(self, name)!r}"
            for name in ("redis_tls_ca_file", "redis_tls_cert_file", "redis_tls_key_file")
            if getattr(self, name) is not None
        )
        state = "".join(
            f", {name}={getattr(self, name)!r}"
            for name, default in (
                ("state_keys", DEFAULT_STATE_KEYS),
                ("state_tombstones", DEFAULT_STATE_TOMBSTONES),
                ("state_max_keys", DEFAULT_STATE_MAX_KEYS),
                ("state_ttl_secs", DEFAULT_STATE_TTL_SECS),
            )
            if getattr(self, name) != default
        )
        return (
            f"Settings({target}, channel_prefix={self.channel_prefix!r}, "
            f"history_size={self.history_size}, history_ttl_secs={self.history_ttl_secs}, "
            f"max_event_bytes={self.max_event_bytes}{files}{state})"
        )

    def redacted_url(self) -> str:
        """The Redis URL with any password replaced by `***`; with Sentinels,
        `master NAME via sentinels A,B` (passwords replaced too)."""
        if self.sentinel is not None:
            return self.sentinel.shown
        return redact_url(self.redis_url or "")


def redact_url(url: str) -> str:
    """`url` as it may be shown: the password (and any query, which may carry
    one) replaced by `***`. URLs and bare `user:pw@host:port` alike (as
    `publisher::redact_url`)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    else:
        scheme += sep
    end = min([i for i in (rest.find(c) for c in "/?#") if i >= 0], default=len(rest))
    authority, tail = rest[:end], rest[end:]
    if "@" in authority:
        userinfo, host = authority.rsplit("@", 1)
        if ":" in userinfo:
            authority = f"{userinfo.split(':', 1)[0]}:***@{host}"
        else:
            authority = f"***@{host}"  # a lone userinfo may be a password
    if "?" in tail:
        tail = tail.split("?", 1)[0] + "?***"
    return f"{scheme}{authority}{tail}"


class _Parsed(NamedTuple):
    host: str
    port: int
    tls: bool
    auth: Auth


def _parse_tcp_url(url: str) -> Optional[_Parsed]:
    """A redis:// or rediss:// URL's host, port (default 6379), TLS and user;
    None when it is not one."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        return None
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    return _Parsed(parts.hostname, port if port is not None else 6379,
                   parts.scheme == "rediss", Auth(username, password))


def _sentinel(entries: Sequence[str], master: Optional[str]) -> SentinelTarget:
    sentinels: List[Tuple[str, int]] = []
    schemes: List[bool] = []
    sentinel_auth = Auth()
    for entry in entries:
        bad = ConfigError(
            f"REDIS_SENTINELS entry {rust_debug_str(redact_url(entry))} is not a Sentinel "
            "address (expected host:port, or a redis:// or rediss:// URL)"
        )
        if "://" in entry:
            url = entry
        elif "@" in entry or ":" not in entry:
            # A bare entry is host:port; credentials need the URL form.
            raise bad
        else:
            url = f"redis://{entry}"
        parsed = _parse_tcp_url(url)
        if parsed is None:
            raise bad
        if sentinel_auth.password is None and parsed.auth.password:
            sentinel_auth = parsed.auth
        schemes.append(parsed.tls)
        sentinels.append((parsed.host, parsed.port))
    sentinel_tls = schemes[0]
    if any(s != sentinel_tls for s in schemes):
        raise ConfigError(
            "REDIS_SENTINELS mixes redis:// and rediss:// entries; use one scheme for all"
        )
    if master is None:
        raise ConfigError(
            "REDIS_SENTINELS is set but REDIS_SENTINEL_MASTER (the master's name at the "
            "Sentinels) is not"
        )
    bad_master = ConfigError(
        f"REDIS_SENTINEL_MASTER {rust_debug_str(redact_url(master))} is not a master name "
        "(letters, digits, '_', '-', '.') or a redis(s)://[user:password@]name URL"
    )
    if "://" in master:
        parsed = _parse_tcp_url(master)
        if parsed is None:
            raise bad_master
        # urlsplit lowercases the host; a master name keeps its case.
        name = urlsplit(master).netloc.rsplit("@", 1)[-1].split(":", 1)[0]
        master_tls, master_auth = parsed.tls, parsed.auth
    else:
        # The master shares the Sentinels' credentials and scheme.
        name, master_tls, master_auth = master, sentinel_tls, sentinel_auth
    if not _PREFIX.fullmatch(name):
        raise bad_master
    shown = f"master {name} via sentinels {','.join(redact_url(e) for e in entries)}"
    return SentinelTarget(tuple(sentinels), sentinel_tls, sentinel_auth, name, master_tls,
                          master_auth, shown)


def _read_pem(var: str, path: str, pattern: "re.Pattern[bytes]", missing: str) -> None:
    try:
        with open(path, "rb") as f:
            pem = f.read()
    except OSError as err:
        raise ConfigError(
            f"{var} {rust_debug_str(path)}: cannot be read ({err.strerror or err})"
        ) from None
    if not pattern.search(pem):
        raise ConfigError(f"{var} {rust_debug_str(path)}: {missing}")


def _parse_int(name: str, raw: str) -> int:
    if not re.fullmatch(r"[+-]?[0-9]+", raw):
        raise ConfigError(f"{name} {rust_debug_str(raw)} is not a whole number")
    return int(raw)


def _parse_seconds(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} {rust_debug_str(raw)} is not a number of seconds") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ConfigError(f"{name} {rust_debug_str(raw)} is not a number of seconds")
    return value


def _check_int(name: str, value: Any, low: int, high: Optional[int]) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be a whole number, not {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"at least {low}" if high is None else f"between {low} and {high}"
        raise ConfigError(f"{name} must be {bound} (got {value})")
