"""krun: an OCI runtime that drives libcrun in-process and runs Kontain payloads under KM."""

__version__ = "0.1.0"
OCI_VERSION = "1.0.2"
