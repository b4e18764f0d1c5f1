"""thrifty: an LLM gateway that cuts inference cost without cutting quality."""

__version__ = "0.1.0"
