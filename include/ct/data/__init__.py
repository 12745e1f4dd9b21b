"""Data: extract batches into snapshots, watch for arrivals, validate with GX, report."""
