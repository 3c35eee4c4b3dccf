"""Local services for development and tests: SeaweedFS S3, a STAC API, a Prefect server."""
