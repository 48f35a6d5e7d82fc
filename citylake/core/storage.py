"""Lake storage: one contract, two backends (local filesystem, S3/MinIO).

Every write to the lake goes through here, so the zone rules of ``lake_layout.md`` hold for
every component:

* every put is atomic: a reader sees the old object or the new one, never a partial one
  (local: temp file + ``os.link``/``os.replace``; S3: a PUT or a completed multipart upload);
* write-once keys (raw, quarantine, published versions, manifest) refuse to change; writing the
  same bytes again is a no-op, so a step can be re-run safely;
* every object carries its SHA-256 in its metadata.

Readers that need speed (DuckDB, Polars) read the objects directly through :meth:`url`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

from citylake.core.errors import (
    ImmutableObjectError,
    LakeConfigError,
    LakeError,
    LakeObjectNotFound,
    ObjectExistsError,
    TransientLakeError,
)
from citylake.core.lake import validate_key, write_once_rule
from citylake.core.settings import Settings, resolve_local_root

SHA256_META = "sha256"
_CHUNK = 1 << 20
#: Above this size an S3 upload is multipart (minio splits it into parts of this size).
S3_PART_SIZE = 16 * 1024 * 1024


@dataclass(frozen=True)
class ObjectInfo:
    """What the lake knows of one object."""

    key: str
    size: int
    last_modified: datetime
    sha256: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    etag: str | None = None


def sha256_bytes(data: bytes) -> str:
    """Return the hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path | str) -> str:
    """Return the hex SHA-256 of a local file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


class LakeStorage(ABC):
    """The storage contract every component uses; see the module docstring for its rules."""

    root_uri: str

    # -- backend primitives -------------------------------------------------------------
    @abstractmethod
    def _write(self, key: str, source: Path, size: int, metadata: dict[str, str], create_only: bool) -> bool:
        """Write ``source`` at ``key`` atomically; return False if create_only and it exists."""

    @abstractmethod
    def stat(self, key: str) -> ObjectInfo:
        """Return the object's info, or raise LakeObjectNotFound."""

    @abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """Return the object's bytes, or raise LakeObjectNotFound."""

    @abstractmethod
    def download(self, key: str, path: Path | str) -> Path:
        """Copy the object to a local file and return its path."""

    @abstractmethod
    def _list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Yield every object whose key starts with ``prefix``, sorted by key."""

    @abstractmethod
    def _delete(self, key: str) -> None:
        """Remove one object (missing is not an error)."""

    @abstractmethod
    def url(self, key: str) -> str:
        """Return the location DuckDB/Polars read ``key`` (or a glob) from."""

    # -- the contract -------------------------------------------------------------------
    def put_bytes(
        self, key: str, data: bytes, *, metadata: Mapping[str, str] | None = None, overwrite: bool = False
    ) -> ObjectInfo:
        """Store ``data`` at ``key`` atomically and return its info."""
        with tempfile.NamedTemporaryFile(prefix="citylake-put-", delete=False) as tmp:
            tmp.write(data)
        try:
            return self._put(key, Path(tmp.name), sha256_bytes(data), metadata, overwrite)
        finally:
            os.unlink(tmp.name)

    def put_file(
        self,
        key: str,
        path: Path | str,
        *,
        metadata: Mapping[str, str] | None = None,
        overwrite: bool = False,
    ) -> ObjectInfo:
        """Store a local file at ``key`` atomically (multipart on S3 when large)."""
        return self._put(key, Path(path), sha256_file(path), metadata, overwrite)

    def put_json(self, key: str, obj: object, *, overwrite: bool = False) -> ObjectInfo:
        """Store ``obj`` as pretty, key-sorted JSON."""
        data = json.dumps(obj, indent=2, sort_keys=True, default=str).encode() + b"\n"
        return self.put_bytes(key, data, metadata={"content-type": "application/json"}, overwrite=overwrite)

    def get_json(self, key: str) -> object:
        """Return the JSON object stored at ``key``."""
        return json.loads(self.get_bytes(key))

    def exists(self, key: str) -> bool:
        """Return True when ``key`` names an object."""
        try:
            self.stat(key)
        except LakeObjectNotFound:
            return False
        return True

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Return every object under ``prefix`` (a plain string prefix, as S3), sorted by key."""
        return list(self._list(prefix))

    def list_prefixes(self, prefix: str) -> list[str]:
        """Return the distinct next-level folders under ``prefix`` (which should end with '/')."""
        seen: dict[str, None] = {}
        for info in self._list(prefix):
            rest = info.key[len(prefix) :]
            if "/" in rest:
                seen[prefix + rest.split("/", 1)[0] + "/"] = None
        return list(seen)

    def delete(self, key: str, *, purge_reason: str | None = None) -> None:
        """Delete a mutable object; write-once objects need an explicit ``purge_reason`` (retention)."""
        validate_key(key)
        rule = write_once_rule(key)
        if rule and not purge_reason:
            raise ImmutableObjectError(key, rule)
        self._delete(key)

    def rename(self, src: str, dst: str, *, overwrite: bool = False) -> ObjectInfo:
        """Move ``src`` to ``dst``: ``dst`` appears whole (atomic on both backends), then ``src`` goes."""
        validate_key(dst)
        if rule := write_once_rule(src):
            raise ImmutableObjectError(src, rule)
        with tempfile.TemporaryDirectory(prefix="citylake-mv-") as tmp:
            local = self.download(src, Path(tmp) / "obj")
            info = self.stat(src)
            meta = {k: v for k, v in info.metadata.items() if k != SHA256_META}
            out = self._put(dst, local, info.sha256 or sha256_file(local), meta, overwrite)
        self._delete(src)
        return out

    def _put(
        self, key: str, source: Path, digest: str, metadata: Mapping[str, str] | None, overwrite: bool
    ) -> ObjectInfo:
        validate_key(key)
        meta = {k.lower(): str(v) for k, v in (metadata or {}).items()}
        meta[SHA256_META] = digest
        size = source.stat().st_size
        rule = write_once_rule(key)
        if rule or not overwrite:
            if self._write(key, source, size, meta, create_only=True):
                return self.stat(key)
            existing = self.stat(key)
            if existing.sha256 == digest:
                return existing  # same bytes again: idempotent no-op
            if rule:
                raise ImmutableObjectError(key, rule)
            raise ObjectExistsError(key)
        self._write(key, source, size, meta, create_only=False)
        return self.stat(key)


# ---------------------------------------------------------------------------------------
class LocalStorage(LakeStorage):
    """The lake as a folder. Metadata lives beside the tree in ``.meta/`` (JSON per object)."""

    META_DIR = ".meta"

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).resolve()
        self.root_uri = self.root.as_uri()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / validate_key(key)

    def _meta_path(self, key: str) -> Path:
        return self.root / self.META_DIR / (key + ".json")

    def _write(self, key: str, source: Path, size: int, metadata: dict[str, str], create_only: bool) -> bool:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        if create_only and target.exists():
            return False
        tmp = target.parent / f".tmp-{uuid.uuid4().hex}-{target.name}"
        try:
            shutil.copyfile(source, tmp)
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            if create_only:
                try:
                    os.link(tmp, target)  # atomic create-if-absent
                except FileExistsError:
                    return False
            else:
                os.replace(tmp, target)  # atomic replace
            self._write_meta(key, target, metadata)
        except OSError as exc:
            raise LakeError(f"cannot write {key!r} under {self.root}: {exc.strerror or exc}") from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return True

    def _write_meta(self, key: str, target: Path, metadata: dict[str, str]) -> None:
        # Written after the data; the size and mtime it records let stat() spot a stale record
        # (a crash between the two writes) and recompute the hash instead of trusting it.
        st = target.stat()
        record = {"metadata": metadata, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
        meta_path = self._meta_path(key)
        meta_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = meta_path.with_name(f".tmp-{uuid.uuid4().hex}")
        tmp.write_text(json.dumps(record, sort_keys=True))
        os.replace(tmp, meta_path)

    def _read_meta(self, key: str, st: os.stat_result) -> dict[str, str]:
        try:
            record = json.loads(self._meta_path(key).read_text())
        except (FileNotFoundError, ValueError):
            return {}
        if record.get("size") != st.st_size or record.get("mtime_ns") != st.st_mtime_ns:
            return {k: v for k, v in record.get("metadata", {}).items() if k != SHA256_META}
        return dict(record.get("metadata", {}))

    def stat(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            st = path.stat()
        except FileNotFoundError:
            raise LakeObjectNotFound(key, self.root_uri) from None
        if not path.is_file():
            raise LakeObjectNotFound(key, self.root_uri)
        meta = self._read_meta(key, st)
        if SHA256_META not in meta:  # no or stale record (written by hand, crash): compute it
            meta[SHA256_META] = sha256_file(path)
        return ObjectInfo(
            key=key,
            size=st.st_size,
            last_modified=datetime.fromtimestamp(st.st_mtime, UTC),
            sha256=meta[SHA256_META],
            metadata=meta,
        )

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise LakeObjectNotFound(key, self.root_uri) from None

    def download(self, key: str, path: Path | str) -> Path:
        try:
            shutil.copyfile(self._path(key), path)
        except (FileNotFoundError, IsADirectoryError):
            raise LakeObjectNotFound(key, self.root_uri) from None
        return Path(path)

    def _list(self, prefix: str) -> Iterator[ObjectInfo]:
        folder = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
        if not folder.is_dir():
            return
        keys = []
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel = Path(dirpath).relative_to(self.root).as_posix()
            for name in filenames:
                if name.startswith("."):
                    continue
                k = name if rel == "." else f"{rel}/{name}"
                if k.startswith(prefix):
                    keys.append(k)
        for k in sorted(keys):
            with contextlib.suppress(LakeObjectNotFound):  # deleted while listing
                yield self.stat(k)

    def _delete(self, key: str) -> None:
        for p in (self._path(key), self._meta_path(key)):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()

    def url(self, key: str) -> str:
        return str(self.root / key)


# ---------------------------------------------------------------------------------------
class S3Storage(LakeStorage):
    """The lake in an S3 bucket (MinIO in production, moto in tests), through the minio SDK."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint: str | None,
        access_key: str,
        secret_key: str,
        region: str = "us-east-1",
    ) -> None:
        from minio import Minio

        parsed = urlparse(endpoint or "https://s3.amazonaws.com")
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise LakeConfigError(f"invalid S3 endpoint {endpoint!r}: expected http(s)://host[:port]")
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.endpoint = f"{parsed.scheme}://{parsed.netloc}"
        self.region = region
        self.root_uri = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self.client = Minio(
            parsed.netloc,
            access_key=access_key,
            secret_key=secret_key,
            secure=parsed.scheme == "https",
            region=region,
        )

    def _name(self, key: str) -> str:
        return self.prefix + validate_key(key)

    @contextlib.contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        from minio.error import S3Error
        from urllib3.exceptions import HTTPError

        try:
            yield
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject"):
                raise LakeObjectNotFound(key, self.root_uri) from None
            if exc.code == "NoSuchBucket":
                raise LakeConfigError(
                    f"bucket {self.bucket!r} does not exist at {self.endpoint}: run 'citylake lake init'"
                ) from None
            if exc.code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise LakeConfigError(
                    f"S3 refused {exc.code} on {key!r} at {self.endpoint}: check credentials and policy"
                ) from None
            raise LakeError(f"S3 error {exc.code} on {key!r}: {exc.message}") from exc
        except HTTPError as exc:
            raise TransientLakeError(f"S3 endpoint {self.endpoint} did not answer for {key!r}: {exc}") from exc

    def _write(self, key: str, source: Path, size: int, metadata: dict[str, str], create_only: bool) -> bool:
        from minio.error import S3Error
        from minio.helpers import normalize_headers

        name = self._name(key)
        content_type = metadata.pop("content-type", "application/octet-stream")
        with self._errors(key):
            if create_only and size <= S3_PART_SIZE:
                # A single conditional PUT: atomic create-if-absent (If-None-Match: *), which the
                # SDK's public put_object cannot send.
                headers = normalize_headers(metadata)
                headers["Content-Type"] = content_type
                headers["If-None-Match"] = "*"
                try:
                    self.client._put_object(self.bucket, name, source.read_bytes(), headers=headers)
                except S3Error as exc:
                    if exc.code in ("PreconditionFailed", "ConditionalRequestConflict"):
                        return False
                    raise
                return True
            if create_only and self.exists(key):
                return False  # large write-once object: check, then multipart (see lake_layout.md)
            with open(source, "rb") as fh:
                self.client.put_object(
                    self.bucket,
                    name,
                    fh,
                    size,
                    content_type=content_type,
                    metadata=metadata,
                    part_size=S3_PART_SIZE,
                )
        return True

    def stat(self, key: str) -> ObjectInfo:
        with self._errors(key):
            st = self.client.stat_object(self.bucket, self._name(key))
        meta = {
            k.lower().removeprefix("x-amz-meta-"): v
            for k, v in (st.metadata or {}).items()
            if k.lower().startswith("x-amz-meta-")
        }
        return ObjectInfo(
            key=key,
            size=st.size or 0,
            last_modified=st.last_modified or datetime.now(UTC),
            sha256=meta.get(SHA256_META),
            metadata=meta,
            etag=st.etag,
        )

    def get_bytes(self, key: str) -> bytes:
        with self._errors(key):
            resp = self.client.get_object(self.bucket, self._name(key))
            try:
                return resp.read()
            finally:
                resp.close()
                resp.release_conn()

    def download(self, key: str, path: Path | str) -> Path:
        with self._errors(key):
            self.client.fget_object(self.bucket, self._name(key), str(path))
        return Path(path)

    def _list(self, prefix: str) -> Iterator[ObjectInfo]:
        with self._errors(prefix or "/"):
            objects = list(self.client.list_objects(self.bucket, prefix=self.prefix + prefix, recursive=True))
        for obj in sorted(objects, key=lambda o: o.object_name):
            yield ObjectInfo(
                key=obj.object_name[len(self.prefix) :],
                size=obj.size or 0,
                last_modified=obj.last_modified or datetime.now(UTC),
                etag=obj.etag,
            )

    def _delete(self, key: str) -> None:
        with self._errors(key):
            self.client.remove_object(self.bucket, self._name(key))

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{key}"

    def ensure_bucket(self) -> bool:
        """Create the bucket if missing; return True when it was created."""
        with self._errors("/"):
            if self.client.bucket_exists(self.bucket):
                return False
            self.client.make_bucket(self.bucket)
            return True


def open_storage(settings: Settings, uri: str | None = None) -> LakeStorage:
    """Return the storage behind ``uri`` (default: the lake) as the settings describe it."""
    uri = uri or settings.lake_uri
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise LakeConfigError(f"S3 URI {uri!r} names no bucket: use s3://bucket[/prefix]")
        access, secret = settings.s3_credentials()
        return S3Storage(
            parsed.netloc,
            parsed.path,
            endpoint=settings.s3_endpoint,
            access_key=access,
            secret_key=secret,
            region=settings.s3_region,
        )
    return LocalStorage(resolve_local_root(uri))
