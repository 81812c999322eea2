"""What every fleetrun service shares: settings, logs, the ops endpoint, backoff, process helpers.

A leaf: it imports nothing of collector/, sink/, the CLI or the development stack.
"""
