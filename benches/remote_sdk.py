#!/usr/bin/env python3
"""The whole-archive path of benches/remote.sh, through the official SDKs, and its request counter.

The archive (`tar | zstd`) is uploaded as ONE blob or object, the way a whole-archive cache plugin does:
Azure with `azure-storage-blob` (`upload_blob`, blocks, max_concurrency=8), S3 with `boto3`
(`upload_fileobj`, multipart, 8 threads). Credentials and endpoints come from the same variables chunkcache
reads: AZURE_STORAGE_ACCOUNT, AZURE_STORAGE_KEY and AZURE_STORAGE_ENDPOINT; AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_REGION and AWS_ENDPOINT_URL.

Usage:
  remote_sdk.py create   azure|s3 CONTAINER             create a container or bucket
  remote_sdk.py upload   azure|s3 CONTAINER NAME        upload stdin as one blob or object
  remote_sdk.py download azure|s3 CONTAINER NAME FILE   download it into FILE (Azure: parallel ranged GETs;
                                                        S3: one GET, or parallel ranges with S3_RANGED_GET=1)
  remote_sdk.py size     azure|s3 CONTAINER NAME        print its size in bytes
  remote_sdk.py requests LOG OFFSET                     count the requests in an emulator access log
                                                        from byte OFFSET on; prints one JSON object
"""

import json
import os
import re
import sys

CONCURRENCY = 8


def azure_container(name):
    from azure.storage.blob import BlobServiceClient

    account = os.environ["AZURE_STORAGE_ACCOUNT"]
    key = os.environ["AZURE_STORAGE_KEY"]
    endpoint = os.environ["AZURE_STORAGE_ENDPOINT"]
    # The SDK's own block and range sizes (4 MiB each) unless SDK_AZURE_BLOCK_MIB / SDK_AZURE_GET_MIB say
    # otherwise: on Azurite larger ranges download faster (400 MB: 4.3 s in 16 MiB ranges, 8.7-10 s in 4 MiB).
    sizes = {}
    if os.environ.get("SDK_AZURE_BLOCK_MIB"):
        sizes["max_block_size"] = int(os.environ["SDK_AZURE_BLOCK_MIB"]) * 2**20
    if os.environ.get("SDK_AZURE_GET_MIB"):
        sizes["max_chunk_get_size"] = int(os.environ["SDK_AZURE_GET_MIB"]) * 2**20
    service = BlobServiceClient(
        account_url=endpoint, credential={"account_name": account, "account_key": key}, **sizes
    )
    return service.get_container_client(name)


def s3_client():
    import boto3

    # boto3 reads AWS_ENDPOINT_URL, AWS_REGION and the keys from the environment itself.
    return boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name=os.environ["AWS_REGION"])


def s3_transfer():
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(max_concurrency=CONCURRENCY, use_threads=True)


def create(kind, container):
    if kind == "azure":
        azure_container(container).create_container()
    else:
        s3_client().create_bucket(Bucket=container)


def upload(kind, container, name):
    stream = sys.stdin.buffer
    if kind == "azure":
        # A stream of unknown length goes up as blocks (by default the SDK's 4 MiB), 8 in flight, then one
        # Put Block List.
        azure_container(container).upload_blob(name, stream, overwrite=True, max_concurrency=CONCURRENCY)
    else:
        s3_client().upload_fileobj(stream, container, name, Config=s3_transfer())


def download(kind, container, name, path):
    with open(path, "wb") as out:
        if kind == "azure":
            # Parallel ranged GETs need a seekable target, hence a file rather than a pipe.
            azure_container(container).download_blob(name, max_concurrency=CONCURRENCY).readinto(out)
        elif os.environ.get("S3_RANGED_GET") == "1":
            s3_client().download_fileobj(container, name, out, Config=s3_transfer())
        else:
            # One GET: moto reads the whole object for every ranged GET (`FakeKey.value` in
            # moto/s3/models.py), so boto3's 8-way download in 8 MiB ranges took 113 s for a 0.9 GB archive
            # where one GET took 7.5 s. S3_RANGED_GET=1 restores boto3's parallel ranges (for real S3).
            config = s3_transfer()
            config.multipart_threshold = 2**62
            s3_client().download_fileobj(container, name, out, Config=config)


def size(kind, container, name):
    if kind == "azure":
        print(azure_container(container).get_blob_client(name).get_blob_properties().size)
    else:
        print(s3_client().head_object(Bucket=container, Key=name)["ContentLength"])


# An access-log line of Azurite (morgan) or moto (werkzeug): `... "METHOD /path?query HTTP/1.1" STATUS ...`.
# moto colours some lines with ANSI escapes inside the quotes.
REQUEST = re.compile(rb'"(?:\x1b\[[0-9;]*m)*([A-Z]+) (\S+) HTTP/[0-9.]+(?:\x1b\[[0-9;]*m)*" (\d{3})')


def kind_of(method, target):
    """PUT, GET, HEAD, LIST, DELETE or POST (S3 multipart start and completion), as chunkcache counts them."""
    path, _, query = target.partition(b"?")
    if method == b"GET":
        params = query.split(b"&")
        # Azure: List Blobs (`restype=container&comp=list`); S3: ListObjects(V2) is a GET of the bucket
        # itself (`/bucket` or `/bucket/`, with or without `list-type=2`).
        if b"comp=list" in params or b"list-type=2" in params or path.strip(b"/").count(b"/") == 0:
            return "list"
        return "get"
    return method.decode().lower()


def requests(log, offset):
    counts = {"put": 0, "get": 0, "head": 0, "list": 0, "delete": 0, "post": 0, "other": 0, "errors": 0}
    with open(log, "rb") as f:
        f.seek(offset)
        for line in f:
            match = REQUEST.search(line)
            if not match:
                continue
            kind = kind_of(match.group(1), match.group(2))
            counts[kind if kind in counts else "other"] += 1
            if int(match.group(3)) >= 400:
                counts["errors"] += 1
    counts["total"] = sum(v for k, v in counts.items() if k != "errors")
    print(json.dumps(counts))


def main(argv):
    commands = {
        "create": (create, 2),
        "upload": (upload, 3),
        "download": (download, 4),
        "size": (size, 3),
        "requests": (lambda log, offset: requests(log, int(offset)), 2),
    }
    if len(argv) < 2 or argv[1] not in commands or len(argv) - 2 != commands[argv[1]][1]:
        sys.exit(__doc__)
    if argv[1] != "requests" and argv[2] not in ("azure", "s3"):
        sys.exit(f"unknown store kind {argv[2]!r}: use azure or s3\n\n{__doc__}")
    function, _ = commands[argv[1]]
    function(*argv[2:])


if __name__ == "__main__":
    main(sys.argv)
