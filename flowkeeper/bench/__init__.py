"""``flowkeeper bench``: throughput and latency workloads, each beside its bare-SQL ceiling."""
