"""The fault suite that counts: `python -m bench.faults` (see __main__)."""
