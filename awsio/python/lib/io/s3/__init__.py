"""The original S3 plugin import path: ``from awsio.python.lib.io.s3.s3dataset import ...``."""
