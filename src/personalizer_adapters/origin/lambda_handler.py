"""AWS Lambda entry point (Function URL or API Gateway): the origin ASGI app through Mangum."""

from mangum import Mangum

from .app import app_from_env

handler = Mangum(app_from_env(), lifespan="off")
