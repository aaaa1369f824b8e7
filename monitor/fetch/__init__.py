"""Fetch stage: polite, bounded, SSRF-guarded conditional GETs (`client`), on top of `netguard`
(which addresses may be connected to)."""

from monitor.fetch.client import Fetcher

__all__ = ["Fetcher"]
