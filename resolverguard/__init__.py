"""resolverguard: a local DNS forwarder that recognises DGA domains with a small character model."""

__version__ = "0.1.0"
