"""Worker tests: a per-test SQLite store, real calls recorded through `SqlCallRecorder`, and the
peers as local fakes on 127.0.0.1; every worker is driven by `run_once(now)`, never by sleeping."""
