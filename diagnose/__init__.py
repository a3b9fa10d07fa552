"""diagnose: explain Forefront TMG "Failed Connection Attempt / Status 64" entries when publishing Exchange."""

__version__ = "0.1.0"
