"""aft: Aggregation Fine-Tuning (arXiv 2501.11877) reproduced end to end."""

__version__ = "0.1.0"
