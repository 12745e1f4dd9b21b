"""Batch scoring: the champion scores a table per interval into idempotent, versioned partitions."""
