"""The aiohttp server: visitor websockets, the site snippet, the operator API and pages,
recording playback."""
