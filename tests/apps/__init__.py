"""Flowkeeper applications that tests run in real ``flowkeeper worker`` processes."""
