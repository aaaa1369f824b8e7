"""monitor: a self-hosted news-monitoring alert service."""

__version__ = "0.1.0"
