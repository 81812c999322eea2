"""The collector: consume command requests, run them over SSH on many hosts, publish results.

collector.app.serve(settings) runs one; `fleetrun collector` is its command line.
"""
