"""A real S3 API on 127.0.0.1 for the tests: moto's server mode (what s3fs tests itself with).

`moto_s3()` starts a `ThreadedMotoServer` on a free port of 127.0.0.1 and points the standard
AWS environment at it (AWS_ENDPOINT_URL and dummy keys, the only way clipfuse learns them);
`make_bucket` creates a bucket through boto3. Every request is answered in this process.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def moto_s3() -> Iterator[str]:
    """Yields the endpoint URL while the server runs and the environment points at it."""
    pytest.importorskip("s3fs", reason="the S3 store tests need s3fs (test extra)")
    server_mod = pytest.importorskip("moto.server", reason="the S3 tests need moto[server]")
    port = free_port()
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in [*ENV, "AWS_ENDPOINT_URL"]}
    os.environ.update({**ENV, "AWS_ENDPOINT_URL": endpoint})
    try:
        yield endpoint
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def make_bucket(name: str) -> None:
    import boto3

    boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"]).create_bucket(Bucket=name)


def list_keys(bucket: str) -> dict[str, bytes]:
    """Every object of `bucket` and its bytes (what a test compares)."""
    import boto3

    client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            out[item["Key"]] = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
    return out


def list_names(bucket: str) -> list[str]:
    """The keys of `bucket` (one listing, no downloads)."""
    import boto3

    client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]
