"""Where operators deliver: a folder, an S3/MinIO prefix, or an SFTP server.

Every drop lists its files as :class:`DeliveredFile` (name, size, when it was delivered) and
reads them whole. Configuration comes from ``ingestion/operators.yaml``; credentials only from
the environment variables it names.
"""

from __future__ import annotations

import os
import stat
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from citylake.core.errors import LakeConfigError, TransientError
from citylake.core.settings import Settings, resolve_local_root


@dataclass(frozen=True)
class DeliveredFile:
    """One file as the operator left it."""

    name: str  # the name as delivered (may contain anything: sanitised before landing)
    size: int
    delivered_at: datetime  # UTC, from the drop's modification time (S3: the server's LastModified)
    location: str  # where it was found, for messages
    #: a folder drop's inode change time (ctime, UTC): set by the city's kernel when the file was
    #: written or its times changed, so a modification time set back by hand moves it forward
    changed_at: datetime | None = None

    @property
    def label(self) -> str:
        """The name as messages, logs and the manifest write it: control characters escaped (a
        newline in a name would forge a log line)."""
        return printable(self.name)


def printable(name: str) -> str:
    """A name with its control characters escaped as \\xNN / \\uNNNN; nothing else changes (so
    the escape of an escaped name is itself)."""
    import unicodedata

    return "".join(ch if unicodedata.category(ch) not in ("Cc", "Cf", "Zl", "Zp") else ascii(ch)[1:-1] for ch in name)


#: Whose clock says when a file arrived, per kind of drop (what lateness is judged on):
#: ``server``, the S3 server's LastModified; ``inode``, a folder's ctime (the kernel's);
#: ``received``, when the city's night first saw the file (SFTP gives only the operator's mtime);
#: ``mtime``, the file's modification time, only where a drop says ``clock: mtime`` (simulated
#: deliveries, whose times the simulator sets: never an operator's drop).
CLOCKS = ("server", "inode", "received", "mtime")


class Drop(ABC):
    """An operator's feed folder."""

    uri: str
    clock: str = "received"
    #: entries the last list() passed over, with why: (name, reason); the night records them
    skipped: list[tuple[str, str]]

    @abstractmethod
    def list(self) -> list[DeliveredFile]:
        """Return the files present, sorted by delivery time then name."""

    @abstractmethod
    def read(self, item: DeliveredFile) -> bytes:
        """Return a delivered file's bytes."""

    def write(self, name: str, data: bytes) -> str:
        """Deliver a file into this drop (the city's archiver of real-time feeds does); return where.
        A drop the city only reads (an operator's SFTP) refuses."""
        raise LakeConfigError(f"drop {self.uri} is read-only for citylake: archive into a folder or bucket drop")


def _sorted(items: list[DeliveredFile]) -> list[DeliveredFile]:
    return sorted(items, key=lambda f: (f.delivered_at, f.name))


class LocalDrop(Drop):
    def __init__(self, path: Path, root: Path | None = None, clock: str = "inode") -> None:
        self.path = path
        self.root = root  # the drop root the city configured (may itself be a link); below it, none
        self.uri = path.as_uri()
        self.skipped = []
        self.clock = clock

    def _linked(self) -> Path | None:
        """A folder between the drop root and this feed's folder that is a symbolic link: whoever
        writes to the drop could point it anywhere on this machine, into write-once raw/."""
        if self.root is None:
            return self.path if self.path.is_symlink() else None
        current = self.root
        for part in self.path.relative_to(self.root).parts:
            current = current / part
            if current.is_symlink():
                return current
        return None

    def list(self) -> list[DeliveredFile]:
        self.skipped = []
        linked = self._linked()
        if linked is not None:
            raise LakeConfigError(
                f"drop folder {linked} is a symbolic link: refused (it could point anywhere on this machine); "
                "make it a real folder"
            )
        if not self.path.is_dir():
            return []
        out = []
        for entry in os.scandir(self.path):
            if entry.name.startswith("."):
                self.skipped.append((entry.name, "a hidden file (a name starting with '.'), never read"))
            elif entry.is_symlink():
                self.skipped.append((entry.name, "a symbolic link, never followed"))
            elif not entry.is_file(follow_symlinks=False):
                self.skipped.append((entry.name, "not a regular file (a folder, a device, a pipe)"))
            else:
                st = entry.stat(follow_symlinks=False)
                out.append(
                    DeliveredFile(
                        entry.name,
                        st.st_size,
                        datetime.fromtimestamp(st.st_mtime, UTC),
                        str(self.path / entry.name),
                        changed_at=datetime.fromtimestamp(st.st_ctime, UTC),
                    )
                )
        return _sorted(out)

    def read(self, item: DeliveredFile) -> bytes:
        return (self.path / item.name).read_bytes()

    def write(self, name: str, data: bytes) -> str:
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.path / f".{name}.part"  # hidden from list() until whole
        tmp.write_bytes(data)
        os.replace(tmp, self.path / name)
        return str(self.path / name)


class S3Drop(Drop):
    def __init__(
        self, bucket: str, prefix: str, *, endpoint: str | None, access_key: str, secret_key: str, region: str
    ) -> None:
        from citylake.core.storage import S3Storage

        # reuse the lake's client construction (endpoint parsing, TLS) for the drop bucket
        self._s3 = S3Storage(bucket, "", endpoint=endpoint, access_key=access_key, secret_key=secret_key, region=region)
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.uri = f"s3://{bucket}/{self.prefix}"
        self.skipped = []
        self.clock = "server"

    def list(self) -> list[DeliveredFile]:
        from minio.error import S3Error

        try:
            objects = list(self._s3.client.list_objects(self.bucket, prefix=self.prefix, recursive=False))
        except S3Error as exc:
            raise LakeConfigError(f"cannot list drop {self.uri}: {exc.code}") from None
        except Exception as exc:  # network
            raise TransientError(f"drop {self.uri} did not answer: {exc}") from exc
        out = [
            DeliveredFile(
                o.object_name[len(self.prefix) :],
                o.size or 0,
                o.last_modified or datetime.now(UTC),
                f"s3://{self.bucket}/{o.object_name}",
            )
            for o in objects
            if not o.is_dir
        ]
        return _sorted(out)

    def write(self, name: str, data: bytes) -> str:
        import io

        self._s3.client.put_object(self.bucket, self.prefix + name, io.BytesIO(data), len(data))  # atomic on S3
        return f"s3://{self.bucket}/{self.prefix}{name}"

    def read(self, item: DeliveredFile) -> bytes:
        resp = self._s3.client.get_object(self.bucket, self.prefix + item.name)
        try:
            return resp.read()
        finally:
            resp.close()
            resp.release_conn()


class SFTPDrop(Drop):
    def __init__(
        self,
        host: str,
        port: int,
        path: str,
        username: str,
        password: str | None = None,
        key_file: str | None = None,
        host_key_policy: str = "reject",
        known_hosts: str | None = None,
    ) -> None:
        self.host, self.port, self.path = host, port, path.rstrip("/") or "/"
        self.known_hosts = known_hosts
        self.username, self.password, self.key_file = username, password, key_file
        self.host_key_policy = host_key_policy
        self.uri = f"sftp://{username}@{host}:{port}{self.path}"
        self.skipped = []

    def _connect(self):
        import paramiko

        client = paramiko.SSHClient()
        client.load_system_host_keys()
        if self.known_hosts:
            client.load_host_keys(self.known_hosts)
        policy = paramiko.AutoAddPolicy() if self.host_key_policy == "accept-new" else paramiko.RejectPolicy()
        client.set_missing_host_key_policy(policy)
        try:
            client.connect(
                self.host,
                port=self.port,
                username=self.username,
                password=self.password,
                key_filename=self.key_file,
                look_for_keys=False,
                allow_agent=False,
                timeout=30,
            )
        except (OSError, paramiko.SSHException) as exc:
            raise TransientError(f"SFTP drop {self.uri} did not answer: {exc}") from exc
        return client, client.open_sftp()

    def list(self) -> list[DeliveredFile]:
        client, sftp = self._connect()
        try:
            out = []
            self.skipped = []
            for attr in sftp.listdir_attr(self.path):
                if attr.filename.startswith("."):
                    self.skipped.append((attr.filename, "a hidden file (a name starting with '.'), never read"))
                elif not stat.S_ISREG(attr.st_mode or 0):
                    self.skipped.append((attr.filename, "not a regular file (a folder, a link, a device)"))
                else:
                    out.append(
                        DeliveredFile(
                            attr.filename,
                            attr.st_size or 0,
                            datetime.fromtimestamp(attr.st_mtime or 0, UTC),
                            f"{self.uri}/{attr.filename}",
                        )
                    )
            return _sorted(out)
        finally:
            client.close()

    def read(self, item: DeliveredFile) -> bytes:
        client, sftp = self._connect()
        try:
            with sftp.open(f"{self.path}/{item.name}", "rb") as fh:
                fh.prefetch()
                return fh.read()
        finally:
            client.close()


def _env(name: str | None, what: str) -> str:
    if not name:
        raise LakeConfigError(f"drop configuration names no environment variable for {what}")
    value = os.environ.get(name)
    if not value:
        raise LakeConfigError(f"{what} missing: set {name} in the environment")
    return value


def open_drop(settings: Settings, spec: dict[str, Any], feed: str) -> Drop:
    """Return the drop of one operator feed from its configuration entry."""
    kind = spec.get("type", "root")
    if kind == "root":
        root = settings.drop_root
        sub = f"{spec.get('path', '').strip('/')}/{feed}".strip("/")
        parsed = urlparse(root)
        if parsed.scheme == "s3":
            access, secret = settings.s3_credentials()
            prefix = f"{parsed.path.strip('/')}/{sub}".strip("/")
            return S3Drop(
                parsed.netloc,
                prefix,
                endpoint=settings.s3_endpoint,
                access_key=access,
                secret_key=secret,
                region=settings.s3_region,
            )
        base = resolve_local_root(root)
        clock = spec.get("clock", "inode")
        if clock not in ("inode", "mtime"):
            raise LakeConfigError(f"drop clock {clock!r}: a folder drop is judged on 'inode' (default) or 'mtime'")
        return LocalDrop(base / sub, base, clock)
    if kind == "s3":
        endpoint = os.environ.get(spec["endpoint_env"]) if spec.get("endpoint_env") else settings.s3_endpoint
        return S3Drop(
            spec["bucket"],
            f"{spec.get('prefix', '').strip('/')}/{feed}".strip("/"),
            endpoint=endpoint,
            access_key=_env(spec.get("access_key_env"), "S3 drop access key"),
            secret_key=_env(spec.get("secret_key_env"), "S3 drop secret key"),
            region=settings.s3_region,
        )
    if kind == "sftp":
        return SFTPDrop(
            spec["host"],
            int(spec.get("port", 22)),
            f"{spec.get('path', '').rstrip('/')}/{feed}",
            username=_env(spec.get("username_env"), "SFTP user"),
            password=os.environ.get(spec["password_env"]) if spec.get("password_env") else None,
            key_file=os.environ.get(spec["key_file_env"]) if spec.get("key_file_env") else None,
            host_key_policy=spec.get("host_key_policy", "reject"),
            known_hosts=settings.sftp_known_hosts,
        )
    raise LakeConfigError(f"unknown drop type {kind!r}: root, s3 or sftp")
