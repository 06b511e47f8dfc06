"""The Worker: a Cloudflare request in, the personalizer core's reply out."""

from urllib.parse import urlsplit

from cf import KVBinding, WorkersClock, config_from_env, mint_visitor_id, miss_path
from workers import Response, WorkerEntrypoint

from personalizer import OriginGate, Personalizer, SharedCache

# The isolate's deliberate state: config parsed once, the byte-bounded cache of shared records, and the
# origin gate (circuit breaker, in-flight calls, negative cache).
_config = None
_cache = None
_gate = None


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        global _config, _cache, _gate
        if _config is None:
            _config = config_from_env(self.env)
            _cache = SharedCache(_config.cache_max_bytes)
            _gate = OriginGate.from_config(_config)
        url = urlsplit(request.url)
        headers = request.headers
        kv = KVBinding(self.env.PERSONALIZATION)
        core = Personalizer(_config, kv, WorkersClock(), mint_visitor_id, _cache,
                            miss_path(_config, kv, self.ctx, _gate))
        reply = await core.handle(request.method, url.path, url.query,
                                  {"cookie": headers.get("cookie"), "sec-gpc": headers.get("sec-gpc")})
        return Response(reply.body, status=reply.status, headers=list(reply.headers))
