"""An example thrifty plugin (see docs/extending.md)."""
