"""outreach benchmarks: `python -m bench` (or `scripts/dev bench`). See bench/README.md.

Benchmarks print numbers and append them to bench/RESULTS.md; they are never timed tests.
"""
