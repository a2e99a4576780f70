"""prosody-analyze: how far does your Prosody scale? Load it, read its logs, fit its resources."""

__version__ = "0.1.0"
