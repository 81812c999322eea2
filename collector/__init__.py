"""The collector: consume command requests, run them over SSH on many hosts, publish results."""
