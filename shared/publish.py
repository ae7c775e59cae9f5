"""Where published files go: a local folder or a blob container (the AI Mode sets, their run state).

A *target* stores named files (``a/b/c.json``, ``/`` separated) and knows four things: write one
(a reader sees the old or the new content, never part of it), read one, list the names under a
prefix, and create one only if it does not exist yet (the one way two instances agree on who does
something once). :func:`target_from_settings` picks the blob container when a blob variable is set,
otherwise the folder ``AI_MODE_OUT``.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Protocol

from shared.settings import Settings, redact, secret_value


class PublishTarget(Protocol):
    description: str

    def write(self, name: str, data: bytes) -> None: ...

    def read(self, name: str) -> bytes | None: ...

    def names(self, prefix: str) -> list[str]: ...

    def create(self, name: str, data: bytes) -> bool:
        """Write ``name`` only if it does not exist; True when this call created it."""

    def delete(self, name: str) -> None: ...

    def copy(self, source: str, dest: str) -> None: ...


def create_if_missing(create) -> None:
    """Call a storage client's ``create_container`` / ``create_queue``; one that exists already is fine."""
    from azure.core.exceptions import ResourceExistsError

    try:
        create()
    except ResourceExistsError:
        pass


def _checked(name: str) -> str:
    parts = name.split("/")
    if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"not a relative file name: {name!r}")
    return name


class FolderTarget:
    """Files under a local folder; each write goes to a temporary file renamed over the old one."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.description = f"folder {self.root}"

    def _path(self, name: str) -> Path:
        return self.root.joinpath(*_checked(name).split("/"))

    def write(self, name: str, data: bytes) -> None:
        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)

    def read(self, name: str) -> bytes | None:
        try:
            return self._path(name).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def names(self, prefix: str) -> list[str]:
        base = self.root.joinpath(*[p for p in prefix.split("/") if p])
        if not base.is_dir():
            return []
        return sorted(p.relative_to(self.root).as_posix() for p in base.rglob("*")
                      if p.is_file() and not p.name.startswith(".tmp-"))

    def create(self, name: str, data: bytes) -> bool:
        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(path, "xb") as f:
                f.write(data)
        except FileExistsError:
            return False
        return True

    def delete(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)

    def copy(self, source: str, dest: str) -> None:
        target = self._path(dest)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
        os.close(fd)
        shutil.copyfile(self._path(source), tmp)
        os.replace(tmp, target)


class BlobTarget:
    """Files in a blob container (created when missing); by connection string (Azurite) or account URL
    with ``DefaultAzureCredential`` (managed identity). A blob upload replaces the whole blob at once."""

    def __init__(self, container: str, connection_string: str | None = None, account_url: str | None = None):
        from azure.storage.blob import BlobServiceClient

        if connection_string:
            service = BlobServiceClient.from_connection_string(connection_string)
        else:
            from azure.identity import DefaultAzureCredential

            service = BlobServiceClient(account_url, credential=DefaultAzureCredential())
        self.container = service.get_container_client(container)
        self.description = redact(self.container.url)
        self._ready = False

    def _ensure(self) -> None:
        if not self._ready:
            create_if_missing(self.container.create_container)
            self._ready = True

    def write(self, name: str, data: bytes) -> None:
        from azure.storage.blob import ContentSettings

        self._ensure()
        kind = "application/json" if name.endswith(".json") else "application/octet-stream"
        self.container.upload_blob(_checked(name), data, overwrite=True,
                                   content_settings=ContentSettings(content_type=kind))

    def read(self, name: str) -> bytes | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return self.container.download_blob(_checked(name)).readall()
        except ResourceNotFoundError:
            return None

    def names(self, prefix: str) -> list[str]:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return sorted(b.name for b in self.container.list_blobs(name_starts_with=prefix))
        except ResourceNotFoundError:
            return []

    def create(self, name: str, data: bytes) -> bool:
        from azure.core.exceptions import ResourceExistsError

        self._ensure()
        try:
            self.container.upload_blob(_checked(name), data, overwrite=False)
        except ResourceExistsError:
            return False
        return True

    def delete(self, name: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            self.container.delete_blob(_checked(name))
        except ResourceNotFoundError:
            pass

    def copy(self, source: str, dest: str) -> None:
        data = self.read(source)
        if data is not None:
            self.write(dest, data)


def target_from_settings(settings: Settings) -> PublishTarget:
    if settings.ai_mode_blob_connection_string or settings.ai_mode_blob_account_url:
        return BlobTarget(settings.ai_mode_blob_container, secret_value(settings.ai_mode_blob_connection_string),
                          settings.ai_mode_blob_account_url)
    return FolderTarget(settings.ai_mode_out)
