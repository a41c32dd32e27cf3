"""Durable steps: the model, the registry, operations and the worker pool."""
