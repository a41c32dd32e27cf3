"""Business processes: schemes, their formats, expressions and the process runtime."""
