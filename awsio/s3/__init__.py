"""S3 access: URLs, configuration-driven clients and the two backends."""
