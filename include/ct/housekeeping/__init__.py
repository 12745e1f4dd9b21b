"""Housekeeping: retention of what a pipeline writes, so a year of runs keeps disk use bounded."""
