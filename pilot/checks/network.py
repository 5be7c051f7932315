"""The squid check: find the site's HTTP proxy, prove it serves, hand it to jobs.

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
