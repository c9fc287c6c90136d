"""An S3-protocol server for benchmarks: moto on 127.0.0.1, with the AWS variables pointing at it
and a bucket ``bench``; several benchmarks may start one each in one process."""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def moto_bucket() -> Iterator[None]:
    import s3fs
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update(AWS_ENDPOINT_URL=f"http://{host}:{port}", AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                      AWS_DEFAULT_REGION="us-east-1")
    s3fs.S3FileSystem.clear_instance_cache()  # an earlier server's clients point elsewhere
    try:
        fs = s3fs.S3FileSystem()
        if not fs.exists("bench"):  # moto keeps its buckets per process, across servers
            fs.mkdir("bench")
        yield
    finally:
        server.stop()
