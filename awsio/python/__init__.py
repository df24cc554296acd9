"""The original S3 plugin import path (``awsio.python.lib.io.s3.s3dataset``), kept for old code."""
