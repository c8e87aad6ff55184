"""The benchmark harness behind bench/bench.py: tether vs
containerd-shim-runc-v2, B1-B7 (see bench/README.md for the module map)."""
