"""The local token: how the SDK and CLI on the API's own machine get in without being given
a token, as a Jupyter server's token reaches the notebooks it starts.

With auth on (the default) the API makes sure at start-up that ``<data_dir>/token`` holds a
token it accepts: the first start creates one (stored hashed, like every token), writes it
to that file (mode 0600, in a directory of mode 0700) and prints it once; later starts, and
other servers sharing the data directory, accept the token already in the file. The SDK
reads the file only for a loopback URL, so the local token never travels to another host.
The file is as secret as an SSH key: whoever can read it can use the API.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import stat
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["FILE_NAME", "token_path", "read_token", "write_token", "is_loopback", "is_loopback_url", "token_for"]

log = logging.getLogger(__name__)
FILE_NAME = "token"


def token_path(data_dir: Path) -> Path:
    return Path(data_dir).expanduser() / FILE_NAME


def read_token(path: Path) -> str | None:
    """The token in ``path``, or None when there is none (or it cannot be read)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        mode = os.fstat(fd).st_mode
        text = os.read(fd, 4096).decode("ascii", "replace").strip()
    finally:
        os.close(fd)
    if stat.S_IMODE(mode) & 0o077:
        log.warning(
            "%s can be read by other users (mode %o): chmod 600 it, or revoke that token",
            path, stat.S_IMODE(mode),
        )
    return text or None


def write_token(path: Path, token: str) -> None:
    """Write ``token`` to ``path`` atomically, readable by this user only."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    # Created 0600 from the start: never readable by others, not even for an instant.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, token.encode("ascii") + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without brackets) is this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def is_loopback_url(url: str) -> bool:
    return is_loopback(urlsplit(url).hostname or "")


def token_for(url: str, data_dir: Path) -> str | None:
    """The local token when ``url`` is an API on this machine (loopback), else None."""
    if not is_loopback_url(url):
        return None
    return read_token(token_path(data_dir))
