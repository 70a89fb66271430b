"""Fetching MNIST with torchvision when it is missing, and failing at once, with the fix, without a network."""

from __future__ import annotations

import socket
import urllib.parse
import urllib.request
from pathlib import Path

from mnist_lit.data.idx import missing_files, missing_files_message
from mnist_lit.errors import MNISTDataError

NETWORK_TIMEOUT_S = 10.0


def unreachable_reason(urls: list[str], timeout: float = NETWORK_TIMEOUT_S) -> str | None:
    """Why none of ``urls`` can be reached (one quick connection attempt each), or None if one can.

    torchvision's downloader has no timeout and retries every mirror for every file, so without a network it
    can hang or print a page of errors; one probe per host answers the question first. A configured HTTP(S)
    proxy is probed instead of the hosts, since that is where urllib connects.
    """
    reasons = []
    proxies = urllib.request.getproxies()
    for url in urls:
        parts = urllib.parse.urlsplit(proxies.get(urllib.parse.urlsplit(url).scheme) or url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            socket.create_connection((parts.hostname, port), timeout=timeout).close()
            return None
        except OSError as error:
            reasons.append(f"{parts.hostname}: {error.strerror or error}")
    return "; ".join(reasons)


def download_mnist(data_dir: Path) -> None:
    """Fetch the four files with torchvision into ``<data_dir>/MNIST/raw`` (it verifies each archive)."""
    from torchvision.datasets import MNIST  # only a download needs torchvision's datasets

    missing = missing_files(data_dir / "MNIST" / "raw")
    reason = unreachable_reason(list(MNIST.mirrors))
    if reason is not None:
        raise MNISTDataError(f"{missing_files_message(data_dir, missing)} (Downloading failed: no network, {reason}.)")
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(NETWORK_TIMEOUT_S)  # torchvision's urlopen calls take no timeout of their own
    try:
        MNIST(str(data_dir), train=True, download=True)
        MNIST(str(data_dir), train=False, download=True)
    except Exception as error:  # torchvision raises bare RuntimeErrors/URLErrors on network problems
        missing = missing_files(data_dir / "MNIST" / "raw")
        detail = " ".join(str(error).split())
        raise MNISTDataError(f"{missing_files_message(data_dir, missing)} (Downloading failed: {detail})") from error
    finally:
        socket.setdefaulttimeout(previous_timeout)
