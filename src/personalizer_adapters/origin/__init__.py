"""The origin: the Starlette app (resolve, ingest), its Lambda handler, the profile store, histories."""
