"""The pure domain: standard library only, no asyncio, no clock (time is always a parameter).

A test (tests/test_layout.py) checks that nothing here imports an adapter or an I/O library.
"""
