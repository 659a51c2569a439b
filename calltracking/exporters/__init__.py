"""Analytics exporters: pure payload builders and validators, and thin async senders.

- `outcome`: Sent / RetryLater / Hopeless / Skipped, back-off and the export state they lead to.
- `ga4`: one `phone_call` event per call for GA4's Measurement Protocol.
- `metrika`: the CSV of Yandex Metrika's calls upload, the upload and its status.
- `webhooks`: signed event deliveries and the receiver's check of the signature.

Builders take the time as a parameter and do no I/O; senders take an `aiohttp.ClientSession`
owned by the caller and return an outcome instead of raising. The worker that picks pending
exports from the store and records the outcomes lives elsewhere.
"""
