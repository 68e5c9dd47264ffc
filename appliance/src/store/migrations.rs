//! Versioned schema changes, applied in order at start.
//!
//! The schema version lives in SQLite's `user_version`. Each migration runs in its own
//! transaction with the version bump, so a crash mid-way leaves the previous version
//! whole and the next start applies it again. Migrations are only ever appended.

use rusqlite::Connection;

use super::StoreError;

/// One schema change.
pub(crate) struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration this binary knows, in order; `version` counts from 1 without gaps.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "school",
        sql: "
        CREATE TABLE meta (
            key   TEXT PRIMARY KEY,
            value TEXT NOT NULL
        ) STRICT;
        CREATE TABLE classes (
            id    INTEGER PRIMARY KEY,
            name  TEXT NOT NULL UNIQUE,
            level TEXT NOT NULL
        ) STRICT;
        CREATE TABLE teachers (
            id           INTEGER PRIMARY KEY,
            login        TEXT NOT NULL UNIQUE,
            display_name TEXT NOT NULL
        ) STRICT;
        CREATE TABLE class_teachers (
            class_id   INTEGER NOT NULL REFERENCES classes(id) ON DELETE CASCADE,
            teacher_id INTEGER NOT NULL REFERENCES teachers(id) ON DELETE CASCADE,
            PRIMARY KEY (class_id, teacher_id)
        ) STRICT;
        CREATE TABLE pupils (
            id         INTEGER PRIMARY KEY,
            class_id   INTEGER NOT NULL REFERENCES classes(id) ON DELETE CASCADE,
            first_name TEXT NOT NULL,
            last_name  TEXT NOT NULL
        ) STRICT;
        CREATE INDEX pupils_by_class ON pupils(class_id);
    ",
    },
    Migration {
        version: 2,
        name: "dns",
        sql: "
        -- The DNS cache as it was at the last save, so a restart (or a power cut) does
        -- not start the school cold, and stale answers survive while the uplink is down.
        CREATE TABLE dns_cache (
            name      TEXT NOT NULL,
            qtype     INTEGER NOT NULL,
            qclass    INTEGER NOT NULL,
            response  BLOB NOT NULL,
            stored_at INTEGER NOT NULL,
            PRIMARY KEY (name, qtype, qclass)
        ) STRICT, WITHOUT ROWID;
        -- Queries per hour: totals, and blocked queries per category.
        CREATE TABLE dns_hourly (
            hour       INTEGER NOT NULL,
            counter    TEXT NOT NULL,
            value      INTEGER NOT NULL,
            PRIMARY KEY (hour, counter)
        ) STRICT, WITHOUT ROWID;
    ",
    },
    Migration {
        version: 3,
        name: "sync",
        sql: "
        -- Events waiting for the broker's ack, written in the transaction of the change
        -- they describe. AUTOINCREMENT: a sequence number is never reused, so with the
        -- box's name it is the event's id at the central side.
        CREATE TABLE outbox (
            seq      INTEGER PRIMARY KEY AUTOINCREMENT,
            at       INTEGER NOT NULL,
            priority INTEGER NOT NULL,
            body     TEXT NOT NULL
        ) STRICT;
        CREATE INDEX outbox_by_priority ON outbox(priority, seq);
        -- Running totals kept in the same transactions as the rows they count.
        CREATE TABLE sync_counters (
            name  TEXT PRIMARY KEY,
            value INTEGER NOT NULL
        ) STRICT, WITHOUT ROWID;
        -- Desired state in force, per kind, as the central side signed it.
        CREATE TABLE desired (
            kind       TEXT PRIMARY KEY,
            version    INTEGER NOT NULL,
            scope      TEXT NOT NULL,
            envelope   TEXT NOT NULL,
            applied_at INTEGER NOT NULL
        ) STRICT;
        -- DNS counters per client for hours not yet closed into outbox events.
        CREATE TABLE dns_client_hourly (
            hour    INTEGER NOT NULL,
            client  TEXT NOT NULL,
            queries INTEGER NOT NULL,
            blocked INTEGER NOT NULL,
            PRIMARY KEY (hour, client)
        ) STRICT, WITHOUT ROWID;
    ",
    },
    Migration {
        version: 4,
        name: "hub",
        sql: "
        -- Enrolled tablets. Only a SHA-256 of each token is kept: a stolen database
        -- gives no device's credentials.
        CREATE TABLE devices (
            id          INTEGER PRIMARY KEY,
            name        TEXT NOT NULL UNIQUE,
            token_hash  BLOB NOT NULL UNIQUE,
            class_id    INTEGER REFERENCES classes(id) ON DELETE SET NULL,
            pupil_id    INTEGER REFERENCES pupils(id) ON DELETE SET NULL,
            desired     TEXT NOT NULL DEFAULT '{}',
            revoked     INTEGER NOT NULL DEFAULT 0,
            enrolled_at INTEGER NOT NULL,
            model       TEXT NOT NULL DEFAULT '',
            last_seen   INTEGER NOT NULL DEFAULT 0
        ) STRICT;
        -- One-use enrolment codes, shown to the admin.
        CREATE TABLE enrolment_codes (
            code_hash  BLOB PRIMARY KEY,
            class_id   INTEGER REFERENCES classes(id) ON DELETE CASCADE,
            name       TEXT NOT NULL,
            expires_at INTEGER NOT NULL
        ) STRICT;
        -- One-shot actions for a device that was offline, until they expire.
        CREATE TABLE device_queue (
            id         INTEGER PRIMARY KEY,
            device_id  INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
            command_id INTEGER NOT NULL,
            action     TEXT NOT NULL,
            expires_at INTEGER NOT NULL
        ) STRICT;
        CREATE INDEX device_queue_by_device ON device_queue(device_id, id);
        -- Teachers' passwords: PBKDF2-HMAC-SHA256 with a salt of their own.
        CREATE TABLE teacher_passwords (
            teacher_id INTEGER PRIMARY KEY REFERENCES teachers(id) ON DELETE CASCADE,
            salt       BLOB NOT NULL,
            hash       BLOB NOT NULL,
            iterations INTEGER NOT NULL
        ) STRICT;
    ",
    },
    Migration {
        version: 5,
        name: "attendance",
        sql: "
        -- Who was there, per class and day, as the teacher saved it.
        CREATE TABLE attendance (
            class_id INTEGER NOT NULL REFERENCES classes(id) ON DELETE CASCADE,
            day      TEXT NOT NULL,
            pupil_id INTEGER NOT NULL REFERENCES pupils(id) ON DELETE CASCADE,
            present  INTEGER NOT NULL,
            teacher  TEXT NOT NULL,
            saved_at INTEGER NOT NULL,
            PRIMARY KEY (class_id, day, pupil_id)
        ) STRICT, WITHOUT ROWID;
    ",
    },
    Migration {
        version: 6,
        name: "pupil_cards",
        sql: "
        -- A pupil's QR card names this generation; revoking a card bumps it, so every
        -- printed copy stops working at once.
        ALTER TABLE pupils ADD COLUMN card_generation INTEGER NOT NULL DEFAULT 1;
        -- Pupils signed in on shared tablets; a session ends with the tablet's
        -- acknowledgement that the profile was wiped.
        CREATE TABLE pupil_sessions (
            id         INTEGER PRIMARY KEY,
            pupil_id   INTEGER NOT NULL REFERENCES pupils(id) ON DELETE CASCADE,
            device_id  INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
            started_at INTEGER NOT NULL,
            ended_at   INTEGER,
            wiped      INTEGER NOT NULL DEFAULT 0
        ) STRICT;
    ",
    },
    Migration {
        version: 7,
        name: "groups",
        sql: "
        -- Level groups a teacher makes from the pupils of a class.
        CREATE TABLE pupil_groups (
            id       INTEGER PRIMARY KEY,
            class_id INTEGER NOT NULL REFERENCES classes(id) ON DELETE CASCADE,
            name     TEXT NOT NULL,
            UNIQUE (class_id, name)
        ) STRICT;
        CREATE TABLE pupil_group_members (
            group_id INTEGER NOT NULL REFERENCES pupil_groups(id) ON DELETE CASCADE,
            pupil_id INTEGER NOT NULL REFERENCES pupils(id) ON DELETE CASCADE,
            PRIMARY KEY (group_id, pupil_id)
        ) STRICT, WITHOUT ROWID;
    ",
    },
    Migration {
        version: 8,
        name: "screen_time",
        sql: "
        -- Screen-time rules per class (group_id 0) or level group: minutes a day
        -- (0: no daily limit) and the hours the tablets may be used.
        CREATE TABLE screen_time (
            class_id        INTEGER NOT NULL REFERENCES classes(id) ON DELETE CASCADE,
            group_id        INTEGER NOT NULL,
            minutes_per_day INTEGER NOT NULL,
            days            TEXT NOT NULL,
            from_time       TEXT NOT NULL,
            to_time         TEXT NOT NULL,
            PRIMARY KEY (class_id, group_id)
        ) STRICT, WITHOUT ROWID;
        -- Seconds each tablet was in use (connected and unlocked), per day.
        CREATE TABLE device_usage (
            device_id INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
            day       TEXT NOT NULL,
            seconds   INTEGER NOT NULL,
            PRIMARY KEY (device_id, day)
        ) STRICT, WITHOUT ROWID;
    ",
    },
    Migration {
        version: 9,
        name: "card_secret",
        sql: "
        -- The key of pupils' QR cards, made once per box (SQLite's generator is seeded
        -- from the system's random source).
        INSERT OR IGNORE INTO meta(key, value) VALUES ('card_secret', lower(hex(randomblob(32))));
    ",
    },
    Migration {
        version: 10,
        name: "cache_index",
        sql: "
        -- The app and update cache's objects (files under data_dir/cache, named by
        -- their SHA-256): size and last access drive the quota's LRU eviction.
        CREATE TABLE cache_objects (
            sha256      TEXT PRIMARY KEY,
            size        INTEGER NOT NULL,
            stored_at   INTEGER NOT NULL,
            last_access INTEGER NOT NULL,
            -- Where it came from when no catalogue item names it (redirect mode).
            source      TEXT
        ) STRICT, WITHOUT ROWID;
        CREATE INDEX cache_objects_lru ON cache_objects(last_access);
        -- Which catalogue items refer to which object, rewritten when the catalogue in
        -- force changes; a pinned reference protects its object from eviction.
        CREATE TABLE cache_refs (
            item     TEXT NOT NULL,
            version  TEXT NOT NULL,
            sha256   TEXT NOT NULL,
            pinned   INTEGER NOT NULL,
            PRIMARY KEY (item, version)
        ) STRICT, WITHOUT ROWID;
        CREATE INDEX cache_refs_sha ON cache_refs(sha256);
        -- Objects fetched by host and path in DNS redirect mode, keyed by origin group.
        CREATE TABLE cache_urls (
            key     TEXT PRIMARY KEY,
            sha256  TEXT NOT NULL,
            content_type TEXT
        ) STRICT, WITHOUT ROWID;
    ",
    },
    Migration {
        version: 11,
        name: "sessions_and_limits",
        sql: "
        -- Teachers' sessions, by the SHA-256 of their cookie: they survive a restart,
        -- and go with their teacher (deleted, or a new password).
        CREATE TABLE teacher_sessions (
            token_hash BLOB PRIMARY KEY,
            teacher_id INTEGER NOT NULL REFERENCES teachers(id) ON DELETE CASCADE,
            csrf       TEXT NOT NULL,
            expires_at INTEGER NOT NULL
        ) STRICT, WITHOUT ROWID;
        CREATE INDEX teacher_sessions_teacher ON teacher_sessions(teacher_id);
        -- Failed attempts per purpose (sign-in, enrolment, Headwind numbers) and client
        -- address, so a restart does not reset a guesser's delay.
        CREATE TABLE auth_failures (
            purpose       TEXT NOT NULL,
            client        TEXT NOT NULL,
            failures      INTEGER NOT NULL,
            blocked_until INTEGER NOT NULL,
            last_at       INTEGER NOT NULL,
            PRIMARY KEY (purpose, client)
        ) STRICT, WITHOUT ROWID;
    ",
    },
    Migration {
        version: 12,
        name: "documents",
        sql: "
        -- Documents teachers share (files under data_dir/documents/{id}/{name}): whose
        -- class they are for, so a class has a quota and a teacher can delete them.
        CREATE TABLE documents (
            id         TEXT PRIMARY KEY,
            class_id   INTEGER NOT NULL REFERENCES classes(id) ON DELETE CASCADE,
            name       TEXT NOT NULL,
            size       INTEGER NOT NULL,
            created_at INTEGER NOT NULL
        ) STRICT, WITHOUT ROWID;
        CREATE INDEX documents_class ON documents(class_id);
    ",
    },
    Migration {
        version: 13,
        name: "admins",
        sql: "
        -- The school's IT admins: they sign in on the same page as teachers, from any
        -- address of the school network, and drive the admin API with a session.
        CREATE TABLE admins (
            id         INTEGER PRIMARY KEY,
            login      TEXT NOT NULL UNIQUE,
            salt       BLOB NOT NULL,
            hash       BLOB NOT NULL,
            iterations INTEGER NOT NULL,
            created_at INTEGER NOT NULL
        ) STRICT;
        CREATE TABLE admin_sessions (
            token_hash BLOB PRIMARY KEY,
            admin_id   INTEGER NOT NULL REFERENCES admins(id) ON DELETE CASCADE,
            csrf       TEXT NOT NULL,
            expires_at INTEGER NOT NULL
        ) STRICT, WITHOUT ROWID;
    ",
    },
    Migration {
        version: 14,
        name: "keyring",
        sql: "
        -- The working key that signed each document in force: a revoked signer no
        -- longer holds the version floor.
        ALTER TABLE desired ADD COLUMN signer TEXT NOT NULL DEFAULT '';
        -- The root's newest revocation list (its issued_at is in sync_counters).
        CREATE TABLE revoked_keys (
            key TEXT PRIMARY KEY
        ) STRICT, WITHOUT ROWID;
    ",
    },
    Migration {
        version: 15,
        name: "update",
        sql: "
        -- The release the update agent is taking: its manifest (as verified), where it
        -- is, and the firmware it was taken from.
        CREATE TABLE update_target (
            id          INTEGER PRIMARY KEY CHECK (id = 1),
            version     TEXT NOT NULL,
            manifest    TEXT NOT NULL,
            state       TEXT NOT NULL,
            detail      TEXT NOT NULL DEFAULT '',
            from_version TEXT NOT NULL,
            bytes_local INTEGER NOT NULL DEFAULT 0,
            changed_at  INTEGER NOT NULL
        ) STRICT;
        -- The target's chunks in place in its bundle file: a row is written only after
        -- the bytes were synced, so a chunk recorded here is never fetched again.
        CREATE TABLE update_chunks (
            idx INTEGER PRIMARY KEY
        ) STRICT;
        -- Versions never taken again, and why (rolled back, a bad signature).
        CREATE TABLE update_never (
            version TEXT PRIMARY KEY,
            reason  TEXT NOT NULL,
            at      INTEGER NOT NULL
        ) STRICT, WITHOUT ROWID;
        -- The release installed last: its bundle is kept, and its chunks are copied
        -- from it for the next release instead of crossing the link.
        CREATE TABLE update_installed (
            id       INTEGER PRIMARY KEY CHECK (id = 1),
            version  TEXT NOT NULL,
            manifest TEXT NOT NULL
        ) STRICT;
    ",
    },
    Migration {
        version: 16,
        name: "update_boot",
        sql: "
        -- The boot the agent asked to reboot from: a start in the same boot means the
        -- reboot never happened (the daemon was killed first), not that the
        -- bootloader fell back.
        ALTER TABLE update_target ADD COLUMN boot_id TEXT NOT NULL DEFAULT '';
    ",
    },
    Migration {
        version: 17,
        name: "cart_net",
        sql: "
        -- The cart's DHCP leases: a reboot gives each tablet its address again.
        CREATE TABLE dhcp_leases (
            mac      TEXT PRIMARY KEY,
            address  TEXT NOT NULL UNIQUE,
            hostname TEXT NOT NULL DEFAULT '',
            expires  INTEGER NOT NULL
        ) STRICT;
    ",
    },
    Migration {
        version: 18,
        name: "pseudonyms",
        sql: "
        -- The key of the pseudonymous pupil ids events carry to the central side:
        -- pupils' names stay in the school (the fleet needs usage, not names).
        INSERT OR IGNORE INTO meta(key, value) VALUES ('pseudonym_secret', lower(hex(randomblob(32))));
    ",
    },
    Migration {
        version: 19,
        name: "local policies",
        sql: "
        -- The policies as the school admin edited them on the admin page (a JSON array
        -- of [[filter.policy]]), in force instead of the configuration file's unless the
        -- central side sent its own. One row: the set is replaced whole.
        CREATE TABLE filter_local_policies (
            id         INTEGER PRIMARY KEY CHECK (id = 1),
            body       TEXT NOT NULL,
            updated_by TEXT NOT NULL,
            updated_at INTEGER NOT NULL
        ) STRICT;
    ",
    },
];

/// The schema version this binary writes.
pub(crate) fn latest() -> u32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Brings the database to `latest()`; refuses one written by a newer binary.
pub(crate) fn apply(conn: &mut Connection) -> Result<u32, StoreError> {
    let found: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > latest() {
        return Err(StoreError::TooNew {
            found,
            supported: latest(),
        });
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > found) {
        let tx = conn.transaction()?;
        tx.execute_batch(m.sql)
            .map_err(|source| StoreError::Migration {
                version: m.version,
                name: m.name,
                source,
            })?;
        tx.pragma_update(None, "user_version", m.version)?;
        tx.commit()?;
        tracing::info!(version = m.version, name = m.name, "applied migration");
    }
    Ok(latest())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_count_from_one_without_gaps() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1, "migration {}", m.name);
        }
    }
}
