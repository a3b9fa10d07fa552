"""diagnose: explain Forefront TMG "Failed Connection Attempt / Status 64" entries when publishing Exchange."""

import sys
import warnings

__version__ = "0.1.0"

if sys.version_info < (3, 9):  # the TMG host's Python: cryptography's notice that 3.8 is old, on every run
    warnings.filterwarnings("ignore", message=r"Python 3\.8 is no longer supported")
