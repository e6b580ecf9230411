"""Measurements, not tests: ratios against the physical limit (the quota) and a naive baseline."""
