"""The case tables of tests/test_hostile_inputs.py, by what they attack."""
