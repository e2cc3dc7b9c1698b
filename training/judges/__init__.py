"""Judges a policy is optimised against: learned reward models and pass/fail rules."""
