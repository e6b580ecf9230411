"""Alibaba Cloud API plumbing: ACS3-HMAC-SHA256 signing and one async HTTP client."""
