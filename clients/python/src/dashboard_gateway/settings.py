"""Configuration: the environment variables of the Rust `publisher` CLI, read
once into a checked, immutable `Settings`.

| variable           | default                  | meaning                                  |
|--------------------|--------------------------|------------------------------------------|
| `REDIS_URL`        | `redis://127.0.0.1:6379` | `redis://`, `rediss://` (TLS), `unix://` |
| `CHANNEL_PREFIX`   | `ws`                     | key and channel namespace (= gateways')  |
| `HISTORY_SIZE`     | `10000`                  | events kept for resume (at least 1)      |
| `HISTORY_TTL_SECS` | `300`                    | age limit of the history (0: size only)  |
| `MAX_EVENT_BYTES`  | `65536`                  | largest encoded envelope, 256..=16777216 |

Empty variables count as unset, as for the gateway.
"""

import os
import re
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional
from urllib.parse import urlsplit

from .errors import ConfigError
from .wire import rust_debug_str

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"
DEFAULT_CHANNEL_PREFIX = "ws"
DEFAULT_HISTORY_SIZE = 10_000
DEFAULT_HISTORY_TTL_SECS = 300
DEFAULT_MAX_EVENT_BYTES = 65_536
MIN_MAX_EVENT_BYTES = 256
MAX_MAX_EVENT_BYTES = 16 * 1024 * 1024

_PREFIX = re.compile(r"[A-Za-z0-9_.\-]{1,64}")

# Variables of the Rust CLI this package does not implement. Refused rather
# than ignored: ignoring them would publish to the wrong Redis, or without TLS
# verification the operator asked for.
_UNSUPPORTED = (
    "REDIS_CLUSTER_NODES",
    "REDIS_SENTINELS",
    "REDIS_SENTINEL_MASTER",
    "REDIS_TLS_CA_FILE",
    "REDIS_TLS_CERT_FILE",
    "REDIS_TLS_KEY_FILE",
)


@dataclass(frozen=True, repr=False)
class Settings:
    """Where and how to publish. Checked on construction (`ConfigError`)."""

    redis_url: str = DEFAULT_REDIS_URL
    channel_prefix: str = DEFAULT_CHANNEL_PREFIX
    history_size: int = DEFAULT_HISTORY_SIZE
    history_ttl_secs: int = DEFAULT_HISTORY_TTL_SECS
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES

    def __post_init__(self) -> None:
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

        for name in _UNSUPPORTED:
            if var(name) is not None:
                raise ConfigError(
                    f"{name} is set, but the Python package does not read it: build a "
                    "redis-py client yourself and pass it as client=... (Sentinel: "
                    "Sentinel(...).master_for(...); TLS: ssl_ca_certs=...). "
                    "Redis Cluster is not supported from Python"
                )
        values: Dict[str, Any] = {}
        for field, name in (
            ("redis_url", "REDIS_URL"),
            ("channel_prefix", "CHANNEL_PREFIX"),
        ):
            if var(name) is not None:
                values[field] = var(name)
        for field, name in (
            ("history_size", "HISTORY_SIZE"),
            ("history_ttl_secs", "HISTORY_TTL_SECS"),
            ("max_event_bytes", "MAX_EVENT_BYTES"),
        ):
            raw = var(name)
            if raw is not None:
                values[field] = _parse_int(name, raw)
        values.update(overrides)
        return cls(**values)

    def __repr__(self) -> str:
        return (
            f"Settings(redis_url={self.redacted_url()!r}, channel_prefix={self.channel_prefix!r}, "
            f"history_size={self.history_size}, history_ttl_secs={self.history_ttl_secs}, "
            f"max_event_bytes={self.max_event_bytes})"
        )

    def redacted_url(self) -> str:
        """The Redis URL with any password replaced by `***`."""
        return redact_url(self.redis_url)


def redact_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return parts._replace(netloc=f"{user}:***@{netloc}").geturl()


def _parse_int(name: str, raw: str) -> int:
    if not re.fullmatch(r"[+-]?[0-9]+", raw):
        raise ConfigError(f"{name} {rust_debug_str(raw)} is not a whole number")
    return int(raw)


def _check_int(name: str, value: Any, low: int, high: Optional[int]) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be a whole number, not {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"at least {low}" if high is None else f"between {low} and {high}"
        raise ConfigError(f"{name} must be {bound} (got {value})")
