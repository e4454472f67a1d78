"""Versioned schema migrations, applied in order; ``PRAGMA user_version`` records the last.

Append a new tuple to change the schema; never edit one that has shipped, since
deployed databases have already run it.
"""

from __future__ import annotations

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: the initial schema
    (
        """CREATE TABLE threads (
            id INTEGER PRIMARY KEY,
            platform TEXT NOT NULL,
            chat_id TEXT NOT NULL,
            topic_id TEXT NOT NULL DEFAULT '',
            external_key TEXT,
            head_turn_id INTEGER REFERENCES turns(id),
            created_at REAL NOT NULL,
            created_by TEXT NOT NULL DEFAULT ''
        )""",
        "CREATE INDEX threads_by_key ON threads (platform, chat_id, topic_id, external_key)",
        """CREATE TABLE turns (
            id INTEGER PRIMARY KEY,
            thread_id INTEGER NOT NULL REFERENCES threads(id),
            parent_id INTEGER REFERENCES turns(id),
            role TEXT NOT NULL CHECK (role IN ('user', 'model')),
            status TEXT NOT NULL,
            author_id TEXT NOT NULL DEFAULT '',
            author_name TEXT NOT NULL DEFAULT '',
            parts TEXT NOT NULL,
            created_at REAL NOT NULL,
            version INTEGER,
            error TEXT
        )""",
        "CREATE INDEX turns_by_thread ON turns (thread_id, parent_id)",
        """CREATE TABLE images (
            sha256 TEXT PRIMARY KEY,
            mime_type TEXT NOT NULL,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            size INTEGER NOT NULL,
            data BLOB NOT NULL,
            created_at REAL NOT NULL
        )""",
        """CREATE TABLE turn_images (
            turn_id INTEGER NOT NULL REFERENCES turns(id),
            sha256 TEXT NOT NULL REFERENCES images(sha256),
            PRIMARY KEY (turn_id, sha256)
        )""",
        "CREATE INDEX turn_images_by_sha ON turn_images (sha256)",
        """CREATE TABLE message_links (
            platform TEXT NOT NULL,
            chat_id TEXT NOT NULL,
            message_id TEXT NOT NULL,
            turn_id INTEGER NOT NULL REFERENCES turns(id),
            thread_id INTEGER NOT NULL REFERENCES threads(id),
            created_at REAL NOT NULL,
            PRIMARY KEY (platform, chat_id, message_id)
        )""",
        "CREATE INDEX links_by_thread ON message_links (thread_id)",
        """CREATE TABLE chat_state (
            platform TEXT NOT NULL,
            chat_id TEXT NOT NULL,
            topic_id TEXT NOT NULL DEFAULT '',
            current_thread_id INTEGER REFERENCES threads(id),
            PRIMARY KEY (platform, chat_id, topic_id)
        )""",
        """CREATE TABLE usage (
            id INTEGER PRIMARY KEY,
            platform TEXT NOT NULL,
            chat_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            thread_id INTEGER,
            model TEXT NOT NULL,
            ok INTEGER NOT NULL,
            images INTEGER NOT NULL DEFAULT 0,
            prompt_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            request_bytes INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL
        )""",
        "CREATE INDEX usage_by_chat ON usage (platform, chat_id, user_id)",
        """CREATE TABLE seen_events (
            platform TEXT NOT NULL,
            event_key TEXT NOT NULL,
            seen_at REAL NOT NULL,
            PRIMARY KEY (platform, event_key)
        )""",
    ),
    # 2: the durable inbox (replaces seen_events) and each thread's ordering lane
    (
        """CREATE TABLE inbox (
            id INTEGER PRIMARY KEY,
            platform TEXT NOT NULL,
            chat_id TEXT NOT NULL,
            message_id TEXT NOT NULL,
            lane TEXT NOT NULL,
            group_id TEXT,
            event TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'received',
            owner TEXT,
            lease_until REAL NOT NULL DEFAULT 0,
            attempts INTEGER NOT NULL DEFAULT 0,
            turn_id INTEGER,
            answer_turn_id INTEGER,
            call_started INTEGER NOT NULL DEFAULT 0,
            error TEXT,
            received_at REAL NOT NULL,
            finished_at REAL,
            UNIQUE (platform, chat_id, message_id)
        )""",
        "CREATE INDEX inbox_unfinished ON inbox (lane, id)"
        " WHERE status IN ('received', 'processing')",
        "CREATE INDEX inbox_finished ON inbox (finished_at) WHERE finished_at IS NOT NULL",
        "DROP TABLE seen_events",
        "ALTER TABLE threads ADD COLUMN lane TEXT NOT NULL DEFAULT ''",
        "CREATE INDEX turns_by_status ON turns (thread_id, status)",
    ),
    # 3: image bytes as files beside the database (storage/blobs.py); old rows keep theirs
    (
        "ALTER TABLE images ADD COLUMN location TEXT NOT NULL DEFAULT 'db'",
    ),
    # 4: money, latency and failure class of each call; spend reservations; chat settings
    (
        "ALTER TABLE usage ADD COLUMN cost_micros INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE usage ADD COLUMN latency_ms INTEGER",
        "ALTER TABLE usage ADD COLUMN failure TEXT",
        "CREATE INDEX usage_by_time ON usage (created_at)",
        "CREATE INDEX usage_by_user_time ON usage (platform, user_id, created_at)",
        "CREATE INDEX usage_by_chat_time ON usage (platform, chat_id, created_at)",
        """CREATE TABLE spend_reservations (
            id INTEGER PRIMARY KEY,
            platform TEXT NOT NULL,
            chat_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            event_id INTEGER,
            amount_micros INTEGER NOT NULL,
            created_at REAL NOT NULL,
            expires_at REAL NOT NULL
        )""",
        "CREATE INDEX reservations_by_event ON spend_reservations (event_id)",
        """CREATE TABLE chat_settings (
            platform TEXT NOT NULL,
            chat_id TEXT NOT NULL,
            name TEXT NOT NULL,
            value TEXT NOT NULL,
            changed_by TEXT NOT NULL DEFAULT '',
            changed_at REAL NOT NULL,
            PRIMARY KEY (platform, chat_id, name)
        )""",
    ),
    # 5: the several user turns one event makes (linked edits), with their progress
    (
        """CREATE TABLE inbox_turns (
            entry_id INTEGER NOT NULL REFERENCES inbox(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            turn_id INTEGER NOT NULL,
            call_started INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (entry_id, position)
        )""",
    ),
    # 6: the model turn a call made, so an export can say what each version cost
    (
        "ALTER TABLE usage ADD COLUMN turn_id INTEGER",
        "CREATE INDEX usage_by_thread ON usage (thread_id) WHERE turn_id IS NOT NULL",
    ),
    # 7: a budget check sums the month's calls in every scope before each call, in the one
    # writer thread; with the cost in the index it reads no rows (300,000 calls this
    # month: 306 -> 9 ms, bench/results/budgets.md)
    (
        "CREATE INDEX usage_spend_by_time ON usage (created_at, cost_micros)",
        "CREATE INDEX usage_spend_by_user ON usage (platform, user_id, created_at, cost_micros)",
        "CREATE INDEX usage_spend_by_chat ON usage (platform, chat_id, created_at, cost_micros)",
        "DROP INDEX usage_by_time",
        "DROP INDEX usage_by_user_time",
        "DROP INDEX usage_by_chat_time",
    ),
    # 8: a model turn's version number from the index: MAX(version) walked every turn of the
    # thread, each row through its parts' overflow pages (the column comes after them) —
    # 0.7 ms of a turn at turn 300, growing with the thread
    (
        "CREATE INDEX turns_by_version ON turns (thread_id, version)",
    ),
    # 9: the region a marked copy named (issue 22), kept with its turn: a small mask and the
    # picture beside the turn's own (the marked copy as sent; the model's unblended answer)
    (
        """CREATE TABLE turn_regions (
            turn_id INTEGER PRIMARY KEY REFERENCES turns(id) ON DELETE CASCADE,
            mask BLOB NOT NULL,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            image_sha256 TEXT
        )""",
    ),
)
