"""On a machine that cannot reach the Hugging Face hub, load hub weights from the local cache at once.

Without this, huggingface_hub retries each request five times with back-off: about a minute of
retry warnings before the same failure, on every run of an offline cluster node, even when the
weights are in the cache. HF_HUB_OFFLINE=1 is the standard switch; this sets it for the duration of
one model creation when the hub's host name does not resolve.
"""

from __future__ import annotations

import os
import socket
import threading
from contextlib import contextmanager
from urllib.parse import urlparse

# With a proxy, a host name that does not resolve here may resolve at the proxy: no guess then
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


def resolves(host: str, timeout_s: float = 3.0) -> bool:
    """False only when the name lookup fails; a lookup still running after timeout_s counts as
    reachable, so a slow resolver is never taken for being offline."""
    answer: list[bool] = []

    def lookup() -> None:
        try:
            socket.getaddrinfo(host, 443)
            answer.append(True)
        except OSError:
            answer.append(False)

    thread = threading.Thread(target=lookup, daemon=True)
    thread.start()
    thread.join(timeout_s)
    return answer[0] if answer else True


def hub_host() -> str | None:
    """The hub's host name (HF_ENDPOINT's, for a mirror); None without huggingface_hub."""
    try:
        from huggingface_hub import constants
    except ImportError:
        return None
    return urlparse(constants.ENDPOINT).hostname


@contextmanager
def offline_if_hub_unreachable():
    """Yields the unreachable host's name while hub loads run offline (cache only), else None."""
    host = hub_host()
    if host is None or any(os.environ.get(v) for v in PROXY_VARIABLES) or resolves(host):
        yield None
        return
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    if before:  # the user's own HF_HUB_OFFLINE=1 already does it
        yield None
        return
    constants.HF_HUB_OFFLINE = True  # read at call time by huggingface_hub (constants.is_offline_mode)
    try:
        yield host
    finally:
        constants.HF_HUB_OFFLINE = before
