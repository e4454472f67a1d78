"""The narrow storage ports: each concern of the store as its own small protocol.

A component asks only for the port it uses (budgets for :class:`~.usage.SpendStore`,
retention for :class:`~.privacy.PrivacyStore` and :class:`~.images.ImageStore`, …);
:class:`bot.core.store.Store`, the union of them all, is for the composition root that
opens a backend. Both backends (``storage/sqlite.py``, ``storage/postgres.py``) implement
every port, which mypy checks where each backend is defined.

- :mod:`.threads` — threads, turns and the platform messages linked to them
- :mod:`.images` — the stored picture bytes
- :mod:`.inbox` — the durable event queue: claims, leases, lanes, albums, progress
- :mod:`.usage` — model calls recorded and summed; spend reservations for budgets
- :mod:`.settings` — the settings a chat's admins changed
- :mod:`.privacy` — ``/forget`` and the retention of idle pictures
- :mod:`.stats` — the operators' figures (``/stats``)
"""
