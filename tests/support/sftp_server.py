"""A real SFTP server for tests: paramiko serving a folder over SSH on 127.0.0.1 (not a mock)."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import paramiko

USER, PASSWORD = "operator-bus", "drop-password-for-tests"


class _Auth(paramiko.ServerInterface):
    def check_auth_password(self, username, password):
        ok = (username, password) == (USER, PASSWORD)
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def get_allowed_auths(self, username):
        return "password"

    def check_channel_request(self, kind, chanid):
        return paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED


class _Handle(paramiko.SFTPHandle):
    def stat(self):
        return paramiko.SFTPAttributes.from_stat(os.fstat(self.readfile.fileno()))


def _folder_sftp(root: Path):
    class FolderSFTP(paramiko.SFTPServerInterface):
        def _local(self, path: str) -> str:
            return str(root / self.canonicalize(path).lstrip("/"))

        def list_folder(self, path):
            try:
                out = []
                for name in os.listdir(self._local(path)):
                    attr = paramiko.SFTPAttributes.from_stat(os.stat(os.path.join(self._local(path), name)))
                    attr.filename = name
                    out.append(attr)
                return out
            except OSError as exc:
                return paramiko.SFTPServer.convert_errno(exc.errno)

        def stat(self, path):
            try:
                return paramiko.SFTPAttributes.from_stat(os.stat(self._local(path)))
            except OSError as exc:
                return paramiko.SFTPServer.convert_errno(exc.errno)

        lstat = stat

        def open(self, path, flags, attr):
            try:
                fh = open(self._local(path), "rb")  # noqa: SIM115 - closed by paramiko with the handle
            except OSError as exc:
                return paramiko.SFTPServer.convert_errno(exc.errno)
            handle = _Handle(flags)
            handle.filename = self._local(path)
            handle.readfile = fh
            return handle

    return FolderSFTP


class SFTPServer:
    """Serve ``root`` on 127.0.0.1:<free port> until stop()."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.host_key = paramiko.RSAKey.generate(2048)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def known_hosts_line(self) -> str:
        return f"[127.0.0.1]:{self.port} {self.host_key.get_name()} {self.host_key.get_base64()}\n"

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            transport = paramiko.Transport(conn)
            transport.add_server_key(self.host_key)
            transport.set_subsystem_handler("sftp", paramiko.SFTPServer, _folder_sftp(self.root))
            transport.start_server(server=_Auth())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()
