"""Fuzz parsers of further untrusted surfaces, one module each (zones files, sources files, HTTP requests,
server answers): a module here defines ``PARSERS``, a list of :class:`tests.fuzz.cases.Parser`, and is found
by itself (tests/fuzz/cases.py), so a new surface is one file."""
