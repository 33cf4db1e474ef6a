"""Orders: every purchase made during a live stream, recorded once with its broadcast.

- `models`: purchases and their lines, the per-show sold counters, idempotency keys, and each
  market's order settings (delivery options, bank transfer, pay on delivery).
- `rules`: pure functions (pricing, the delivery option, status moves, the idempotency
  fingerprint, masking a buyer's name).
- `errors`: the domain's errors, with codes and messages and no HTTP status.
- `settings`: a market's order settings, read, checked and saved.
- `connections`: the quick reads, the key's statements and the purchase's transaction.
- `lineup`: the line-up as buying reads it, and the line-up each process keeps for a moment.
- `pricing`: the pricers and releasers another domain registers (coupons).
- `placing`: checking and placing a purchase, stock taken and given back, the purchase listeners
  (`PURCHASE_LISTENERS`), and the flash sale's admission.
- `keys`: Idempotency-Keys and the key checks asked together.
- `buying`: buying once (`purchase_once`), answering a typed `PurchaseResult`.
- `fulfilment`: reading purchases, status moves, payments, the sweep of unpaid transfers.
- `figures`: the host's figures and the staff's CSV export.
- `payments`: the payment-provider interface and the built-in offline provider.
- `feed`: purchases in the live room (the feed, the stock left, the host's figures).
- `views` and `events`: the HTTP and socket edges; `setup(app)` wires orders into the app.
"""
