"""upload-gateway: a reverse proxy that lets browsers and API clients upload straight to S3."""

__version__ = "0.1.0"
