"""Honour X-Forwarded-* only from the reverse proxies listed in ``TRUSTED_PROXIES``.

Werkzeug's `ProxyFix` does the header work; this decides how many hops to trust per
request: the direct peer must be a trusted proxy, and every trusted address at the right
end of ``X-Forwarded-For`` is one more proxy (a load balancer in front of nginx). Requests
from anyone else are passed through untouched, so a client cannot spoof its address.
"""

from __future__ import annotations

import ipaddress

from werkzeug.middleware.proxy_fix import ProxyFix


class TrustedProxyFix:
    def __init__(self, app, networks):
        self.app = app
        self.networks = tuple(networks)

    def _trusted(self, address: str | None) -> bool:
        try:
            ip = ipaddress.ip_address((address or "").strip())
        except ValueError:
            return False
        return any(ip in network for network in self.networks)

    def __call__(self, environ, start_response):
        if not self._trusted(environ.get("REMOTE_ADDR")):
            return self.app(environ, start_response)
        chain = [a for a in environ.get("HTTP_X_FORWARDED_FOR", "").split(",") if a.strip()]
        hops = 1
        while hops < len(chain) and self._trusted(chain[-hops]):
            hops += 1
        fixed = ProxyFix(self.app, x_for=hops, x_proto=1, x_host=1, x_port=1)
        return fixed(environ, start_response)
