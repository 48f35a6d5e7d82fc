"""Consumers of what is published, never of the warehouse: the HTTP API, the monthly contract
report, open data and the analysts' catalog."""
