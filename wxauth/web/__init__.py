"""HTTP only: blueprints parse a request, call one service and answer; request ids, the
access line, the login rate limit, trusted proxies and the JWT checks live here too."""
