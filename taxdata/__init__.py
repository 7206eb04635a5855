"""taxdata: keep a per-country tax dataset current, fast and trustworthy with a local LLM."""

__version__ = "0.1.0"
