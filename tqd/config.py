"""One frozen Settings object. A TOML config file, TQD_* env vars and CLI flags map onto
its fields (flags win over env, env over the file).

Field names carry their units; the flag for a field is ``--`` plus the name with
dashes (``lease_timeout_s`` -> ``--lease-timeout-s``, env ``TQD_LEASE_TIMEOUT_S``),
except ``data_dir`` which is ``--data`` / ``TQD_DATA``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import msgspec

from .observe import logs

MiB = 1024 * 1024
GiB = 1024 * MiB


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = field(default="127.0.0.1", metadata={"help": "listen address"})
    port: int = field(default=7070, metadata={"help": "listen port (0 picks a free one)"})
    data_dir: Path = field(default=Path("tqd-data"), metadata={"help": "data directory"})
    lease_timeout_s: float = field(default=60.0, metadata={"help": "default lease length of a job"})
    max_attempts: int = field(default=10, metadata={"help": "default leases before a job goes dead"})
    backoff_base_s: float = field(
        default=1.0, metadata={"help": "retry delay = min(base * 2^attempt, max) * U[0.75, 1.25]"}
    )
    backoff_max_s: float = field(default=3600.0, metadata={"help": "cap of the retry delay"})
    retention_s: float = field(
        default=86400.0, metadata={"help": "how long completed/cancelled jobs are kept"}
    )
    key_window_s: float = field(
        default=86400.0, metadata={"help": "idempotency key window after a job finished"}
    )
    max_payload_bytes: int = field(default=1 * MiB, metadata={"help": "limit of one job body"})
    max_bulk_lines: int = field(default=10_000, metadata={"help": "lines in one bulk enqueue"})
    max_bulk_bytes: int = field(default=64 * MiB, metadata={"help": "bytes in one bulk body"})
    max_lease_bytes: int = field(
        default=16 * MiB,
        metadata={"help": "a lease answer stops adding jobs past this many bytes (at least "
                          "one job always goes): bounds the memory and time of one lease"},
    )
    history_interval_s: float = field(
        default=10.0,
        metadata={"help": "how often each queue's counters are sampled for GET /v1/history "
                          "(the dashboard's charts keep 360 samples)"},
    )
    queue_max_depth: int = field(
        default=0,
        metadata={"help": "jobs a queue may hold waiting (queued + scheduled); an enqueue "
                          "past it gets 429 queue_full: backpressure (0: no limit)"},
    )
    max_errors_kept: int = field(default=20, metadata={"help": "error log entries kept per job"})
    map_size_bytes: int = field(
        default=32 * GiB, metadata={"help": "LMDB map size (the store's size limit)"}
    )
    log_keep_entries: int = field(
        default=10_000, metadata={"help": "replication log tail kept with no followers"}
    )
    log_keep_bytes: int = field(
        default=64 * MiB, metadata={"help": "log tail bytes kept (at most 1/16 of the map)"}
    )
    max_batch_ops: int = field(default=2000, metadata={"help": "ops in one group commit"})
    drain_timeout_s: float = field(default=10.0, metadata={"help": "grace period on SIGTERM"})
    header_timeout_s: float = field(
        default=10.0,
        metadata={"help": "time to send a request's headers, from connect or the request's first "
                  "byte; then 408 and close (slow-header clients hold a connection each)"},
    )
    body_timeout_s: float = field(
        default=30.0,
        metadata={"help": "longest wait for more body bytes, and the base of the body deadline; "
                  "then 408 and close (stalled uploads)"},
    )
    body_min_rate_bytes_s: int = field(
        default=16 * 1024,
        metadata={"help": "the body deadline grows by 1 s per this many bytes received, so a "
                  "trickle cannot hold a connection for hours (0: idle timeout only)"},
    )
    keepalive_timeout_s: float = field(
        default=75.0, metadata={"help": "idle keep-alive connections are closed after this"}
    )
    max_connections: int = field(
        default=0,
        metadata={"help": "open connections at most; more are closed at once with 503 "
                  "(0: the file descriptor limit less 100 kept for the store and logs)"},
    )
    write_deadline_s: float = field(
        default=30.0,
        metadata={"help": "a write not answered by the writer within this gets 503 (it may "
                          "still commit); /readyz fails while the writer is this late"},
    )

    # ---- logs (see tqd.observe.logs) ----
    log_format: str = field(
        default="text",
        metadata={"help": "text: one line per event, for people; json: one JSON object per "
                          "line (ts, level, logger, msg and the event's fields), for a log shipper"},
    )
    log_level: str = field(
        default="info",
        metadata={"help": "what the server logs to stderr: debug (adds a line per HTTP "
                          "request), info, warning or error"},
    )

    # ---- access (see tqd.auth) ----
    auth: str = field(
        default="",
        metadata={"help": "TOML file of access tokens, made with `tqd token create`; every /v1 "
                          "call then needs one (re-read on SIGHUP). Empty: no auth, all open"},
    )
    tls_cert: str = field(
        default="", metadata={"help": "PEM certificate (chain) to serve HTTPS with; with "
                                      "--tls-key. Empty: plain HTTP"},
    )
    tls_key: str = field(default="", metadata={"help": "PEM private key of --tls-cert"})
    tls_client_ca: str = field(
        default="",
        metadata={"help": "PEM CA bundle: clients (and other nodes) must present a "
                          "certificate it signed (mutual TLS). Empty: no client certificates"},
    )
    rate_limit_rps: float = field(
        default=0.0,
        metadata={"help": "requests per second each token may make (each client address "
                          "without auth), a token bucket; past it 429 rate_limited with "
                          "Retry-After. In the --auth file a role's [roles.<role>] `rate` wins, "
                          "and a token's own `rate` over its role's. 0: none"},
    )
    rate_limit_burst: int = field(
        default=0, metadata={"help": "the bucket's size: requests allowed at once after a "
                                     "pause (0: 2 x rate_limit_rps, at least 1)"},
    )
    encryption_key_file: str = field(
        default="",
        metadata={"help": "file of AES-256-GCM keys (made by `tqd keys create`/`rotate`): "
                          "payloads, results, progress and error details are stored "
                          "encrypted, with the newest key. Empty: stored as sent"},
    )
    metrics_auth: bool = field(
        default=False,
        metadata={"help": "with --auth, GET /metrics needs a token with the read right "
                          "(default: open, for Prometheus; it shows queue names and counts)"},
    )
    ui: bool = field(
        default=True,
        metadata={"help": "serve the web dashboard at /ui (its files are open: they hold no "
                          "data; with --auth it asks for a token). false: /ui is 404"},
    )
    cluster_token_file: str = field(
        default="",
        metadata={"help": "file holding the cluster's shared secret: followers send it, the "
                          "leader asks it on /v1/_repl/* (required with auth in a cluster)"},
    )

    # ---- cluster (without lease_store: standalone) ----
    lease_store: str = field(
        default="",
        metadata={"help": "where the leader lease lives: file:///shared/dir (one host) or "
                          "s3://bucket/prefix (AWS_* env for endpoint and credentials); "
                          "empty: standalone"},
    )
    node_id: str = field(default="", metadata={"help": "this node's name in the cluster "
                                                       "(default: the host name and port)"})
    advertise: str = field(
        default="", metadata={"help": "the URL other nodes and clients reach this node at "
                                      "(default: http://HOST:PORT)"},
    )
    sync_replicas: int = field(
        default=0,
        metadata={"help": "a write is answered only once this many followers have it on "
                          "disk (0: as soon as the leader has it)"},
    )
    sync_timeout_s: float = field(
        default=5.0,
        metadata={"help": "longest wait for the sync replicas; then 503 not_replicated "
                          "(the write may still survive)"},
    )
    lease_ttl_s: float = field(
        default=10.0,
        metadata={"help": "a follower takes over after seeing the lease unchanged this long; "
                          "the leader stops writes 0.7 x this after its last renew was sent"},
    )
    can_lead: bool = field(
        default=True, metadata={"help": "false: a read replica that never takes the lease"},
    )

    def __post_init__(self) -> None:
        problems = list(_problems(self))
        if problems:
            raise ValueError("; ".join(problems))

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def _problems(s: Settings) -> list[str]:
    out = []
    if not 0 <= s.port <= 65535:
        out.append(f"port must be 0..65535, got {s.port}")
    for name in ("lease_timeout_s", "backoff_max_s", "drain_timeout_s", "write_deadline_s",
                 "history_interval_s"):
        if not getattr(s, name) > 0:
            out.append(f"{name} must be > 0")
    for name in ("backoff_base_s", "retention_s", "key_window_s"):
        if not getattr(s, name) >= 0:
            out.append(f"{name} must be >= 0")
    for name in ("max_attempts", "max_payload_bytes", "max_bulk_lines", "max_bulk_bytes",
                 "max_errors_kept", "max_lease_bytes", "log_keep_entries", "log_keep_bytes", "max_batch_ops"):
        if getattr(s, name) < 1:
            out.append(f"{name} must be >= 1")
    for name in ("body_min_rate_bytes_s", "max_connections", "queue_max_depth", "rate_limit_burst"):
        if getattr(s, name) < 0:
            out.append(f"{name} must be >= 0")
    if not s.rate_limit_rps >= 0:
        out.append("rate_limit_rps must be >= 0")
    if s.map_size_bytes < 64 * 1024:
        out.append("map_size_bytes must be >= 65536")
    out += logs.check(s.log_format, s.log_level)
    return out + _cluster_problems(s)


def _cluster_problems(s: Settings) -> list[str]:
    out = []
    if bool(s.tls_cert) != bool(s.tls_key):
        out.append("tls_cert and tls_key go together")
    if s.tls_client_ca and not s.tls_cert:
        out.append("tls_client_ca needs tls_cert and tls_key (mutual TLS is TLS)")
    if s.sync_replicas < 0:
        out.append("sync_replicas must be >= 0")
    if not s.lease_ttl_s >= 0.5:
        out.append("lease_ttl_s must be >= 0.5")
    if not s.sync_timeout_s > 0:
        out.append("sync_timeout_s must be > 0")
    if s.lease_store and not s.lease_store.startswith(("file://", "s3://")):
        out.append(f"lease_store must be file:///dir or s3://bucket/prefix, got {s.lease_store!r}")
    if s.advertise and not s.advertise.startswith(("http://", "https://")):
        out.append(f"advertise must be an http:// or https:// URL, got {s.advertise!r}")
    if s.lease_store and s.auth and not s.cluster_token_file:
        out.append("cluster_token_file is required in a cluster with auth: with auth the "
                   "replication endpoints take the cluster token only")
    return out


def flag_name(f: dataclasses.Field[Any]) -> str:
    return "--data" if f.name == "data_dir" else "--" + f.name.replace("_", "-")


def env_name(f: dataclasses.Field[Any]) -> str:
    return "TQD_DATA" if f.name == "data_dir" else "TQD_" + f.name.upper()


_DIGITS = re.compile(r"-?\d[\d_]*")


def _dec_hook(t: type, obj: Any) -> Any:
    if t is Path and isinstance(obj, str):
        return Path(obj)
    raise NotImplementedError(f"cannot read {obj!r} as {t}")


def _plain(raw: Any) -> Any:
    """A flag or env string as msgspec's lax mode reads it ("1_000" is 1000, as in TOML)."""
    return raw.replace("_", "") if isinstance(raw, str) and _DIGITS.fullmatch(raw) else raw


def read_config_file(path: Path) -> dict[str, Any]:
    """The settings of a TOML file: field names (or a flag's name without dashes, e.g.
    ``data``, ``lease-timeout-s``) at the top level. Unknown names are an error."""
    try:
        with path.open("rb") as f:
            doc = tomllib.load(f)
    except OSError as e:
        raise ValueError(f"cannot read the config file {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"config file {path}: {e}") from None
    names = {f.name: f.name for f in fields(Settings)}
    names.update({flag_name(f)[2:]: f.name for f in fields(Settings)})
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if key not in names:
            raise ValueError(f"config file {path}: unknown setting {key!r}")
        out[names[key]] = value
    return out


def settings_fields() -> tuple[dataclasses.Field[Any], ...]:
    return fields(Settings)


def load(overrides: Mapping[str, str | None], env: Mapping[str, str] | None = None,
         config_file: str | None = None) -> Settings:
    """Settings from, lowest first: defaults, the TOML config file (``config_file``, else
    ``TQD_CONFIG``), ``TQD_*`` environment variables, flag values (strings; None = not
    given). Every value is converted and checked by msgspec against Settings' types, then
    by its own rules; any problem is a ValueError naming the setting."""
    env = os.environ if env is None else env
    path = config_file or env.get("TQD_CONFIG")
    values: dict[str, Any] = read_config_file(Path(path)) if path else {}
    for f in fields(Settings):
        raw = overrides.get(f.name)
        if raw is None:
            raw = env.get(env_name(f))
        if raw is not None:
            values[f.name] = _plain(raw)
    try:
        return msgspec.convert(values, Settings, strict=False, dec_hook=_dec_hook)
    except msgspec.ValidationError as e:
        m = _TYPE_ERROR.fullmatch(str(e))
        if m is None:  # a rule of Settings (__post_init__), already in words
            raise ValueError(str(e)) from None
        name = m.group(3)
        raise ValueError(f"{name}: expected {m.group(1)}, got {values.get(name)!r}") from None


_TYPE_ERROR = re.compile(r"Expected `(.+)`, got `(.+)` - at `\$\.(\w+)`")
