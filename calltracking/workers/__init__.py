"""Background workers: the analytics exporters and the webhook deliveries.

- `ga4.Ga4Exporter`: one Measurement Protocol hit per due export.
- `metrika.MetrikaExporter`: one calls upload per site per round, upload status polls, the
  counter's extended join window.
- `webhooks.WebhookDispatcher`: records a delivery per matching webhook for each `call.*` and
  `lease.*` event from the bus, delivers it, and retries the due ones.
- `run.run_exporters`: runs them all until cancelled (started by `calltracking serve`).

Every worker has `run_once(now)`, a burst that tests call instead of sleeping; the retry state
lives in the store (calltracking.store.exports), so a new worker object carries on where the
last one stopped.
"""

from calltracking.workers.run import run_exporters

__all__ = ["run_exporters"]
