"""Server glue: mounting wsmigrate into an app (`WsMigrate`), the runtime, settings, guards, the
WebSocket protocol, shutdown, probes, and the browser files under `static/`."""
