"""The package's version, which training records in what it writes; here, below everything that records it."""
__version__ = "0.1.0"
