"""What leaves a process about itself: log redaction now; traces and metrics later.

Secrets in use are masked in every log record before any handler sees it (decision 0031).
Every part of the product may import this, the runner agent included.
"""

from amosflow.telemetry import _redaction as redaction

__all__ = ["redaction"]
