"""The config-validator: an init container that stops a bad configuration before anything trades."""
