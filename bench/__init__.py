"""Benchmarks: scripts that print a results table; not tests, never run in CI.

Rules every benchmark keeps:
- it talks only to 127.0.0.1 and starts the servers it measures itself (as child processes, so
  their memory and CPU are theirs alone), and stops them itself;
- every loop is bounded in count and in time (`asyncio.timeout`), so a stuck peer ends the run;
- each figure is compared with a baseline measured in the same run, and each run is repeated
  (`--repeat`, default 3) and reported as the median, since the machine is shared and noisy.

Run: `python -m bench.ws_bench`, `python -m bench.ami_bench`, `python -m bench.agi_bench`
(docs/benchmarks.md has the options and the results).
"""
