"""The network checks: the pool answers (and its certificate verifies); the site's squid serves.

The pool check fails in seconds with a stable code, so that a glidein that cannot reach its
pool (no route, or a certificate it cannot verify) says so as a validation failure instead of
waiting out its idle timeout and ending as if there had been no work.

The squid check: find the site's HTTP proxy, prove it serves, hand it to jobs.

Candidates, in order: the configured URL, GLIDEIN_Proxy_URL, http_proxy / HTTP_PROXY.
A candidate is used only if a request through it works (its answer carries the proxy's
Via or X-Cache header, or at least comes back); "none" turns the check off.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from typing import Optional

from pilot.checks.base import CheckContext, metrics
from pilot.errors import NETWORK, CheckFailed
from updraft.core import protocol


def candidates(context: CheckContext) -> list[str]:
    setting = context.config.squid.strip()
    if setting.lower() == "none":
        return []
    if setting and setting.lower() != "auto":
        return [setting]
    found = []
    for name in (protocol.ATTR_GLIDEIN_PROXY_URL, "http_proxy", "HTTP_PROXY"):
        value = context.environ.get(name, "").strip()
        if value and value.lower() != "none" and value not in found:
            found.append(value if "://" in value else "http://" + value)
    return found


def through_proxy(proxy: str, url: str, timeout: float) -> dict:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy, "https": proxy}))
    started = time.monotonic()
    with opener.open(url, timeout=timeout) as answer:
        answer.read(65536)
        headers = {k.lower(): v for k, v in answer.headers.items()}
        return {
            "status": answer.status,
            "via": headers.get("via", ""),
            "cache": headers.get("x-cache", ""),
            "seconds": time.monotonic() - started,
        }


def check_pool(context: CheckContext) -> Optional[str]:
    """The pool answers its ping over the same transport and CA the pilot will use."""
    import ssl

    from updraft.core.client import Client, ClientError
    from updraft.core.transport import PoolUnreachable

    config = context.config
    client = Client(
        config.pool, "", config.ca_file or None, min(20.0, float(config.check_timeout_s)), config.transport
    )
    started = time.monotonic()
    try:
        client.ping()
    except (PoolUnreachable, ClientError, OSError) as exc:
        reason = str(exc)
        verify = (
            isinstance(getattr(exc, "__cause__", None), ssl.SSLError) or "CERTIFICATE_VERIFY_FAILED" in reason
        )
        if verify:
            raise CheckFailed(
                "pool",
                2306,
                NETWORK,
                f"the pool's certificate does not verify ({config.pool}): {reason}",
                {"ca_file": config.ca_file or "system"},
            ) from None
        raise CheckFailed(
            "pool", 2305, NETWORK, f"the pool does not answer at {config.pool}: {reason}"
        ) from None
    finally:
        client.close()
    metrics(context, seconds=round(time.monotonic() - started, 3))
    return f"the pool answers at {config.pool}"


def check_squid(context: CheckContext) -> Optional[str]:
    config = context.config
    proxies = candidates(context)
    if not proxies:
        if config.squid_required:
            raise CheckFailed(
                "squid", 2302, NETWORK, "a squid proxy is required and none is configured for this site"
            )
        context.facts["squid"] = ""
        return "no squid configured"
    url = config.squid_test_url or config.pool.rstrip("/") + protocol.PING
    problems = []
    for proxy in proxies:
        try:
            answer = through_proxy(proxy, url, min(30.0, float(config.check_timeout_s)))
        except (urllib.error.URLError, OSError, ValueError) as exc:
            problems.append(f"{proxy}: {getattr(exc, 'reason', exc)}")
            continue
        context.facts["squid"] = proxy
        metrics(
            context,
            proxy=proxy,
            via=answer["via"],
            x_cache=answer["cache"],
            seconds=round(answer["seconds"], 3),
        )
        return (
            f"squid {proxy} serves ({answer['via'] or answer['cache'] or 'status ' + str(answer['status'])})"
        )
    raise CheckFailed(
        "squid", 2301, NETWORK, "no squid proxy serves: " + "; ".join(problems), {"tried": len(proxies)}
    )
