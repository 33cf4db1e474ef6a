"""Orders: every purchase made during a live stream, recorded once with its broadcast.

- `models`: purchases and their lines, the per-show sold counters, idempotency keys, and each
  market's order settings (delivery options, bank transfer, pay on delivery).
- `rules`: pure functions (pricing, the delivery option, status moves, the idempotency
  fingerprint, masking a buyer's name).
- `services`: units of work on a database session (`db` first), including the functions the live
  room calls: `lineup_stock`, `broadcast_figures`, `masked_name`, and the `PURCHASE_LISTENERS` hook.
- `payments`: the payment-provider interface and the built-in offline provider.
- `views`: the API routes and pages; `register(app, api)` wires them in.
"""
