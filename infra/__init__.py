"""Development infrastructure: local services and deployment manifests (not installed)."""
