"""What tqd shows of itself: the Prometheus metrics (metrics.py); the log's format and level,
text or JSON lines (logs.py: standard library and msgspec only, so the worker uses it too)."""
