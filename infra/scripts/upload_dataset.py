#!/usr/bin/env python3
"""Upload a dataset folder to the blob container the service reads (serverless and AKS alike).

    python infra/scripts/upload_dataset.py data/wdi --container-url https://<account>.blob.core.windows.net/datasets
    python infra/scripts/upload_dataset.py data/wdi --account-url https://<account>.blob.core.windows.net \
        --container datasets [--prefix wdi]
    python infra/scripts/upload_dataset.py data/wdi --connection-string "$AZURITE"     # emulator or keys
    python infra/scripts/upload_dataset.py --manifest-only data/wdi                   # write data/wdi/manifest.json

Signs in with DefaultAzureCredential (``az login``, ``azd auth login``, a managed identity or the CI's
federated identity); the dataset accounts accept no shared keys. You need Storage Blob Data Contributor
on the container: the Bicep grants it to ``uploaderPrincipalId`` (azd passes your own id).

Every instance of the service checks the container every DATASET_REFRESH_SECONDS and reloads when a
file's ETag changed, so an upload reaches running instances without a restart. Only the dataset
files the service knows (shared/dataset.py: indicatorData.csv or .parquet, indicatorMeta.csv,
datasetMeta.csv, countryMeta.csv) are uploaded, then ``manifest.json`` last: each file's size, SHA-256
and CSV row count. With an ``indicatorData.csv``, its columnar copy ``indicatorData.parquet`` is written
from it and uploaded too (``--no-parquet``: not), once per data version: instances read the copy, which
loads faster at platform size (README, Performance). The copy records the SHA-256 of the CSV it was made
from; the service reads it only beside that very CSV. A Parquet file already in the folder is replaced by
the copy of the CSV, so the two always hold the same table. ``--manifest-only --parquet`` writes the copy into
the folder as well; ``--manifest-only`` alone keeps a Parquet file that is the copy of the folder's CSV and
rewrites one that is not (made from an earlier CSV, or by hand). No manifest ever lists a Parquet file that
is not the copy of the CSV listed with it: ``--no-parquet`` with such a file in the folder is refused (delete
it, or let the script rewrite it). The service loads a version only when its files match its manifest, so an instance
never serves a publish still in progress, cut short or half-written. Run it with the project's
environment (make setup).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from shared.dataset import (DATA_FILE, DATA_PARQUET, KNOWN_FILES, MANIFEST, REQUIRED_FILES,  # noqa: E402
                            DatasetFormatError, columnar_copy, make_manifest, stale_parquet)  # the service's own checks

CONTENT_TYPES = {".csv": "text/csv", ".parquet": "application/vnd.apache.parquet"}


def dataset_files(folder: Path) -> list[Path]:
    """The files of folder the service reads; refuses a folder that lacks one the service needs."""
    files = [folder / name for name in KNOWN_FILES if (folder / name).is_file()]
    names = {f.name for f in files}
    if DATA_PARQUET in names:
        names.add(DATA_FILE)  # the columnar copy stands in for the CSV
    missing = [name for name in REQUIRED_FILES if name not in names]
    if missing:
        raise SystemExit(f"{folder} is not a dataset folder: missing {', '.join(missing)}")
    return files


def publish_files(folder: Path, parquet: bool | None = True) -> dict[str, bytes]:
    """The files to publish: folder's dataset files and, with ``parquet``, the columnar copy of its CSV.

    ``parquet`` None: a Parquet file in the folder is kept when it is the copy of the folder's CSV, else
    rewritten from the CSV; False: none is written, and a Parquet file that is not the copy is refused."""
    files = {path.name: path.read_bytes() for path in dataset_files(folder)}
    stale = stale_parquet(files)
    if stale and parquet is False:
        raise SystemExit(f"{folder}: {stale}; not publishing it (--parquet rewrites it from {DATA_FILE}, "
                         f"or delete {DATA_PARQUET})")
    if stale:
        print(f"{folder}: {stale}; rewriting it from {DATA_FILE}")
        parquet = True
    if parquet and DATA_FILE in files:
        try:
            files[DATA_PARQUET] = columnar_copy(files)
        except DatasetFormatError as exc:
            raise SystemExit(f"{folder}: not publishing a dataset the service would refuse: {exc}") from None
    return files


def manifest_of(files: dict[str, bytes], folder: Path, dataset_version: str | None = None) -> bytes:
    """The manifest of the files, as JSON; refuses data the service would refuse."""
    try:
        manifest = make_manifest(files, dataset_version)
    except DatasetFormatError as exc:
        raise SystemExit(f"{folder}: not publishing a dataset the service would refuse: {exc}") from None
    return (json.dumps(manifest, indent=2) + "\n").encode()


def manifest_for(folder: Path, dataset_version: str | None = None) -> bytes:
    """The manifest of folder's dataset files as they are, as JSON; refuses data the service would refuse."""
    return manifest_of(publish_files(folder, parquet=False), folder, dataset_version)


def write_manifest(folder: Path, dataset_version: str | None = None, parquet: bool | None = None) -> Path:
    """Write folder/manifest.json (for a local folder the service reads directly); first, with ``parquet``
    (or a Parquet file there that is not the copy of the CSV: see publish_files) folder/indicatorData.parquet,
    the columnar copy of its CSV."""
    files = publish_files(folder, parquet)
    copy = folder / DATA_PARQUET
    if DATA_PARQUET in files and not (copy.is_file() and copy.read_bytes() == files[DATA_PARQUET]):
        copy.write_bytes(files[DATA_PARQUET])
    target = folder / MANIFEST
    target.write_bytes(manifest_of(files, folder, dataset_version))
    return target


def container_client(args):
    from azure.storage.blob import ContainerClient

    if args.connection_string:
        client = ContainerClient.from_connection_string(args.connection_string, args.container)
        # In Azure the container comes from the infrastructure; an emulator (Azurite) starts empty.
        if not client.exists():
            client.create_container()
        return client
    from azure.identity import DefaultAzureCredential

    if args.container_url:
        parts = urlsplit(args.container_url.rstrip("/"))
        account_url, container = f"{parts.scheme}://{parts.netloc}", parts.path.strip("/")
    else:
        account_url, container = args.account_url, args.container
    return ContainerClient(account_url, container, credential=DefaultAzureCredential())


def _retrying(action, wait_seconds: float):
    """Run action(), retrying authorization failures for up to wait_seconds (new role assignments take minutes)."""
    from azure.core.exceptions import HttpResponseError

    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            return action()
        except HttpResponseError as exc:
            if exc.status_code != 403 or time.monotonic() >= deadline:
                raise
            print("  access not granted yet (role assignments take a few minutes); retrying in 15 s", file=sys.stderr)
            time.sleep(15)


def upload(folder: Path, container, prefix: str = "", if_empty: bool = False, wait_seconds: float = 0,
           dataset_version: str | None = None, parquet: bool = True) -> list[str]:
    """Upload the dataset files of folder (and, with ``parquet``, the columnar copy of its CSV) under prefix,
    then their manifest; returns the blob names written."""
    from azure.storage.blob import ContentSettings

    files = publish_files(folder, parquet)
    manifest = manifest_of(files, folder, dataset_version)  # before uploading anything: refuses bad data early
    prefix = prefix.strip("/")
    base = f"{prefix}/" if prefix else ""
    if if_empty:
        present = _retrying(lambda: [b.name for b in container.list_blobs(name_starts_with=base)], wait_seconds)
        if present:
            print(f"{container.url}/{base} already holds {len(present)} blobs; nothing uploaded (--if-empty)")
            return []
    written = []
    # Metadata first, the indicator data last: the data file's new ETag is what most often starts a reload.
    for file in sorted(files, key=lambda n: (n in (DATA_FILE, DATA_PARQUET), n)):
        name = base + file
        settings = ContentSettings(content_type=CONTENT_TYPES.get(Path(file).suffix, "application/octet-stream"))
        data = files[file]  # bytes, not a stream: a retried upload starts from the beginning
        _retrying(lambda: container.upload_blob(name, data, overwrite=True, content_settings=settings), wait_seconds)
        print(f"  {folder / file} -> {container.url}/{name} ({len(data):,} bytes)")
        written.append(name)
    # Last: until the manifest matches the files, instances keep serving the version they have.
    name = base + MANIFEST
    settings = ContentSettings(content_type="application/json")
    _retrying(lambda: container.upload_blob(name, manifest, overwrite=True, content_settings=settings), wait_seconds)
    print(f"  manifest -> {container.url}/{name}")
    written.append(name)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="folder holding the dataset files (e.g. data/wdi)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--container-url", help="https://<account>.blob.core.windows.net/<container>")
    where.add_argument("--account-url", help="https://<account>.blob.core.windows.net (with --container)")
    where.add_argument("--connection-string", help="a storage connection string (Azurite, or an account with keys)")
    parser.add_argument("--container", default="datasets")
    parser.add_argument("--prefix", default="", help="folder inside the container (DATASET_BLOB_PREFIX)")
    parser.add_argument("--if-empty", action="store_true", help="upload only when nothing is there yet")
    parser.add_argument("--wait-for-access", type=float, default=0, metavar="SECONDS",
                        help="keep retrying 403 answers this long (right after provisioning)")
    parser.add_argument("--dataset-version", help="version recorded in the manifest (default: hash of the files)")
    parser.add_argument("--manifest-only", action="store_true",
                        help="only write FOLDER/manifest.json (a local folder the service reads directly)")
    parser.add_argument("--parquet", action=argparse.BooleanOptionalAction, default=None,
                        help="publish indicatorData.parquet, the columnar copy of indicatorData.csv "
                             "(default: yes for an upload; with --manifest-only, when given or when the folder's "
                             "Parquet file is not the copy of its CSV)")
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        parser.error(f"{args.folder} is not a folder")
    if args.manifest_only:
        print(f"wrote {write_manifest(args.folder, args.dataset_version, parquet=args.parquet)}")
        return 0
    if not (args.container_url or args.account_url or args.connection_string):
        parser.error("one of --container-url, --account-url, --connection-string is required (or --manifest-only)")
    container = container_client(args)
    written = upload(args.folder, container, args.prefix, args.if_empty, args.wait_for_access, args.dataset_version,
                     parquet=args.parquet is not False)
    if written:
        print(f"uploaded {len(written)} files; instances pick them up within DATASET_REFRESH_SECONDS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
