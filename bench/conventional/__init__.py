"""The conventional stack of the HTTP benchmark: Flask + PostgreSQL ``EXCLUDE USING gist``."""
