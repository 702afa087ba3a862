"""The lease on S3 (or a store that speaks its conditional writes), through obstore.

create is ``PUT If-None-Match: *``, swap is ``PUT If-Match: <etag>``; both answer 412
when the condition fails. obstore (object_store underneath) maps the answers so:

  412 or 409 on create                   AlreadyExistsError  -> LeaseConflict
  412 or 404 on swap                     PreconditionError   -> LeaseConflict
  409 on swap (obstore retries it once)  AlreadyExistsError  -> LeaseConflict
  404 on GET                             FileNotFoundError   -> read() is None
  404 on create (no bucket), refused,    BaseError           -> LeaseStoreError
  timeout, 5xx, 403, ...

409 ConditionalRequestConflict means another conditional write to the key raced ours;
the caller re-reads, as after any conflict.

Configuration is obstore's own reading of the environment: AWS_ENDPOINT_URL_S3,
AWS_ENDPOINT_URL or AWS_ENDPOINT; AWS_REGION, else AWS_DEFAULT_REGION (else us-east-1);
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, or a role (web identity,
container or instance credentials). Requests are path-style unless
AWS_VIRTUAL_HOSTED_STYLE_REQUEST=true. Here we only allow plain http when the endpoint
is http:// (a local MinIO or moto), and set the store's timeouts.

The timeouts are the lease's, not obstore's defaults (30 s per request, 10 retries, up
to 3 min), which run far past a lease TTL. A request gets `timeout_s` in all and at
most one retry (connection errors, 5xx; a PUT that timed out is not retried, as its
outcome is unknown). Worst case about 2 x timeout_s; a call that somehow outlasts
that (a credential lookup hanging, say) is cut off and is a LeaseStoreError.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING

import obstore
from obstore.exceptions import AlreadyExistsError, BaseError, NotFoundError, PreconditionError
from obstore.store import S3Store

from tqd.cluster.lease import MAX_LEASE_BYTES, LeaseConflict, LeaseStore, LeaseStoreError

if TYPE_CHECKING:
    from obstore import PutMode
    from obstore.store import ClientConfig, RetryConfig

# In obstore's order of precedence.
ENDPOINT_VARS = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT")


def endpoint_from_env(env: Mapping[str, str]) -> str | None:
    """The endpoint obstore will use, if one is set."""
    return next((env[k] for k in ENDPOINT_VARS if env.get(k)), None)


class S3LeaseStore(LeaseStore):
    """The lease at ``s3://bucket/prefix/leader/lease.json``."""

    def __init__(self, bucket: str, prefix: str, *, timeout_s: float,
                 env: Mapping[str, str] = os.environ) -> None:
        endpoint = endpoint_from_env(env)
        self.description = f"s3://{bucket}/{prefix}".rstrip("/")
        if endpoint:
            self.description += f" at {endpoint}"
        client_options: ClientConfig = {
            "timeout": timedelta(seconds=timeout_s),
            "connect_timeout": timedelta(seconds=min(0.5, timeout_s / 3)),
        }
        if endpoint and endpoint.startswith("http://"):
            client_options["allow_http"] = True
        retry_config: RetryConfig = {
            "max_retries": 1,
            "retry_timeout": timedelta(seconds=timeout_s),
            "backoff": {"init_backoff": timedelta(milliseconds=50),
                        "max_backoff": timedelta(milliseconds=200)},
        }
        # The bucket and prefix are given; the rest comes from the AWS_* variables.
        self._store = S3Store(bucket, prefix=prefix or None, client_options=client_options,
                              retry_config=retry_config)
        self._deadline_s = 2 * timeout_s + 0.5

    async def _get(self, key: str) -> tuple[bytes, str] | None:
        where = f"{self.description}: GET {key}"
        try:
            async with asyncio.timeout(self._deadline_s):
                got = await obstore.get_async(self._store, key)
                meta = got.meta
                if meta["size"] > MAX_LEASE_BYTES:
                    raise LeaseStoreError(f"{where}: {meta['size']} bytes: not a lease")
                body = bytes(await got.bytes_async())
        except (FileNotFoundError, NotFoundError):
            return None
        except (BaseError, OSError, TimeoutError) as e:
            raise LeaseStoreError(f"{where}: {_brief(e, self._deadline_s)}") from e
        if not meta["e_tag"]:
            raise LeaseStoreError(f"{where}: the answer has no ETag")
        return body, meta["e_tag"]

    async def _put_new(self, key: str, body: bytes) -> str:
        return await self._put(key, body, "create")

    async def _put_if(self, key: str, body: bytes, etag: str) -> str:
        # Only the e_tag key: a None-valued "version" is a TypeError in obstore 0.12.
        return await self._put(key, body, {"e_tag": etag})

    async def _put(self, key: str, body: bytes, mode: PutMode) -> str:
        op = "create" if mode == "create" else "swap"
        where = f"{self.description}: {op} {key}"
        try:
            async with asyncio.timeout(self._deadline_s):
                result = await obstore.put_async(self._store, key, body, mode=mode)
        except (AlreadyExistsError, PreconditionError) as e:
            raise LeaseConflict(f"{where}: {_brief(e, self._deadline_s)}") from e
        except (FileNotFoundError, NotFoundError) as e:
            # 404 on a create-only PUT is not a lost race: the bucket is missing.
            raise LeaseStoreError(f"{where}: not found (does the bucket exist?): "
                                  f"{_brief(e, self._deadline_s)}") from e
        except (BaseError, OSError, TimeoutError) as e:
            raise LeaseStoreError(f"{where}: {_brief(e, self._deadline_s)}") from e
        if not result["e_tag"]:
            raise LeaseStoreError(f"{where}: the answer has no ETag")
        return result["e_tag"]

    async def _discard(self, key: str) -> None:
        try:
            async with asyncio.timeout(self._deadline_s):
                await obstore.delete_async(self._store, key)
        except (BaseError, OSError, TimeoutError):
            pass  # a probe left behind is harmless; delete may not even be permitted


def _brief(e: BaseException, deadline_s: float) -> str:
    """obstore's message without its multi-line debug dump, shortened."""
    if isinstance(e, TimeoutError) and not isinstance(e, BaseError):
        return f"no answer within {deadline_s:g}s"
    text = str(e).split("\n\nDebug source", 1)[0]
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= 400 else text[:400] + "..."
