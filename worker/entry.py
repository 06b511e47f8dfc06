"""The Worker: a Cloudflare request in, the personalizer core's reply out."""

from urllib.parse import urlsplit

from cf import KVBinding, WorkersClock, config_from_env, mint_visitor_id
from workers import Response, WorkerEntrypoint

from personalizer import Personalizer, SharedCache

# The isolate's deliberate state: config parsed once, and the byte-bounded cache of shared records.
_config = None
_cache = None


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        global _config, _cache
        if _config is None:
            _config = config_from_env(self.env)
            _cache = SharedCache(_config.cache_max_bytes)
        url = urlsplit(request.url)
        headers = request.headers
        core = Personalizer(_config, KVBinding(self.env.PERSONALIZATION), WorkersClock(), mint_visitor_id,
                            _cache)
        reply = await core.handle(request.method, url.path, url.query,
                                  {"cookie": headers.get("cookie"), "sec-gpc": headers.get("sec-gpc")})
        return Response(reply.body, status=reply.status, headers=list(reply.headers))
