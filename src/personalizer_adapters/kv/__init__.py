"""KV targets and pushing: push planning, the journaled push, the Cloudflare KV client, local KV."""
