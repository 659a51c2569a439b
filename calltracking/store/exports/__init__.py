"""Export bookkeeping: which analytics exports and webhook deliveries are due, who holds them,
and what came of them.

Modules: `rows` (the GA4/Metrika `exports` rows: claims, outcomes, retries), `metrika_uploads`
(Metrika upload polling and extended thresholds), `webhook_deliveries` (one delivery per event
and url), `idempotent_insert` (INSERT ignoring duplicates on either engine).

Rule every module here keeps: a row is held by one worker at a time (claims guarded by
`attempts`), and an outcome is stored only by its holder (`rows` names the one exception).
"""
