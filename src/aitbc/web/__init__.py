"""The marketplace web app's server side: ``aitbc web serve`` serves the built app (web/dist) and
tells it where the services are (``/config.json``); ``aitbc web openapi`` writes the services'
OpenAPI documents the app's typed clients are generated from."""
