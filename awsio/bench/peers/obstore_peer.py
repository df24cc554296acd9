"""obstore (Rust ``object_store`` bindings; litdata downloads its chunks with it), as its docs
recommend for many objects: one ``S3Store`` and the async API, every GET in flight at once with
``asyncio.gather`` bounded by a semaphore of ``connections`` (32), bodies collected with ``bytes()``.
Store settings: ``endpoint`` with ``virtual_hosted_style_request=False`` and ``allow_http=True`` for
the local server, credentials from the environment.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from awsio.bench.peers.common import split_url

if TYPE_CHECKING:
    from awsio.bench.engine import Job

IMPORTS = ("obstore", "obstore.store")


class _Obstore:
    def __init__(self, job: Job) -> None:
        from obstore.store import S3Store

        self.job = job
        self.bucket = split_url(job.urls[0])[0]
        config: dict[str, Any] = {"region": job.region, "access_key_id": os.environ.get("AWS_ACCESS_KEY_ID"),
                                  "secret_access_key": os.environ.get("AWS_SECRET_ACCESS_KEY")}
        if job.endpoint:
            config.update(endpoint=job.endpoint, virtual_hosted_style_request=False)
        self.store = S3Store(self.bucket, config=config, client_options={"allow_http": True})  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[int]:
        import obstore

        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        sem = asyncio.Semaphore(self.job.connections)

        async def one(key: str) -> int:
            async with sem:
                resp = await obstore.get_async(self.store, key)
                return len(bytes(await resp.bytes_async()))

        try:
            tasks = [loop.create_task(one(split_url(u)[1])) for u in self.job.urls]
            for done in asyncio.as_completed(tasks):  # each result as soon as it is there
                yield loop.run_until_complete(done)
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def make(job: Job) -> Iterable[int]:
    return _Obstore(job)
