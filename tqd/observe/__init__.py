"""What tqd shows of itself: the Prometheus metrics (metrics.py)."""
