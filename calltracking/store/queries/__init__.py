"""What the operator API reads and changes beyond the adapters' own store functions.

Modules: `call_listing` (calls listed and shown), `call_changes` (spam, note, export retries),
`leads` (an account's leads by month), `pool_states` (numbers and pools with their states),
`site_changes` (site PATCH and DELETE), `report_inputs` (what a site report is computed from),
`call_filters` (the calls list's filters as SQL), `qualification` (tags, the target-call rule),
`overview` (the calls an overview counts).

Rules every module here keeps:
- Callers of these functions have checked ownership; `account_id=None` means the admin (all).
- Every change runs inside the caller's one write transaction.
"""
