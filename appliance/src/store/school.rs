//! The school's data: classes, teachers, pupils, attendance, level groups, screen-time
//! rules and QR card generations. Every SQL statement about them lives here; the
//! hub's HTTP handlers call these functions and never write SQL themselves.

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::Serialize;

use super::StoreError;

/// How many of each the school has; shown in the status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub classes: u64,
    pub teachers: u64,
    pub pupils: u64,
}

pub fn counts(conn: &Connection) -> Result<Counts, StoreError> {
    let one = |table: &str| -> Result<u64, StoreError> {
        Ok(
            conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| {
                r.get::<_, i64>(0)
            })? as u64,
        )
    };
    Ok(Counts {
        classes: one("classes")?,
        teachers: one("teachers")?,
        pupils: one("pupils")?,
    })
}

/// A class and the people in it, as given to [`seed`].
pub struct ClassSeed<'a> {
    pub name: &'a str,
    pub level: &'a str,
    pub teacher: (&'a str, &'a str),
    pub pupils: &'a [(&'a str, &'a str)],
}

/// Adds classes, their teacher and pupils; classes already present are left alone,
/// so seeding twice changes nothing.
pub fn seed(tx: &Transaction<'_>, classes: &[ClassSeed<'_>]) -> Result<(), StoreError> {
    for c in classes {
        let added = tx.execute(
            "INSERT INTO classes(name, level) VALUES (?1, ?2) ON CONFLICT(name) DO NOTHING",
            params![c.name, c.level],
        )?;
        if added == 0 {
            continue;
        }
        let class_id = tx.last_insert_rowid();
        tx.execute(
            "INSERT INTO teachers(login, display_name) VALUES (?1, ?2) ON CONFLICT(login) DO NOTHING",
            params![c.teacher.0, c.teacher.1],
        )?;
        tx.execute(
            "INSERT INTO class_teachers(class_id, teacher_id) SELECT ?1, id FROM teachers WHERE login = ?2",
            params![class_id, c.teacher.0],
        )?;
        for (first, last) in c.pupils {
            tx.execute(
                "INSERT INTO pupils(class_id, first_name, last_name) VALUES (?1, ?2, ?3)",
                params![class_id, first, last],
            )?;
        }
    }
    Ok(())
}

/// A class's id by its name.
pub fn class_id(conn: &Connection, name: &str) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .query_row("SELECT id FROM classes WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .optional()?)
}

/// What signing a teacher in needs: id, password salt, hash and iterations, and the
/// classes they teach. `None` for an unknown login or one without a password.
pub struct Credentials {
    pub teacher_id: i64,
    pub salt: Vec<u8>,
    pub hash: Vec<u8>,
    pub iterations: u32,
    pub classes: Vec<i64>,
}

pub fn credentials(conn: &Connection, login: &str) -> Result<Option<Credentials>, StoreError> {
    let row: Option<(i64, Vec<u8>, Vec<u8>, u32)> = conn
        .query_row(
            "SELECT t.id, p.salt, p.hash, p.iterations FROM teachers t
             JOIN teacher_passwords p ON p.teacher_id = t.id WHERE t.login = ?1",
            [login],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    let Some((teacher_id, salt, hash, iterations)) = row else {
        return Ok(None);
    };
    let mut st = conn.prepare("SELECT class_id FROM class_teachers WHERE teacher_id = ?1")?;
    let classes = st
        .query_map([teacher_id], |r| r.get::<_, i64>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(Credentials {
        teacher_id,
        salt,
        hash,
        iterations,
        classes,
    }))
}

/// The pupils of a level group of `class` (none if the group is another class's).
pub fn group_members(conn: &Connection, group: i64, class: i64) -> Result<Vec<i64>, StoreError> {
    let mut st = conn.prepare(
        "SELECT m.pupil_id FROM pupil_group_members m
         JOIN pupil_groups g ON g.id = m.group_id
         WHERE g.id = ?1 AND g.class_id = ?2",
    )?;
    let v = st
        .query_map(params![group, class], |r| r.get::<_, i64>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(v)
}

/// A class as a teacher's page lists it.
#[derive(Debug, Clone, Serialize)]
pub struct ClassRow {
    pub id: i64,
    pub name: String,
    pub level: String,
}

/// The classes among `ids` that exist, in the order given.
pub fn classes(conn: &Connection, ids: &[i64]) -> Result<Vec<ClassRow>, StoreError> {
    let mut out = Vec::new();
    let mut st = conn.prepare_cached("SELECT id, name, level FROM classes WHERE id = ?1")?;
    for id in ids {
        let row = st
            .query_row([id], |r| {
                Ok(ClassRow {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    level: r.get(2)?,
                })
            })
            .optional()?;
        out.extend(row);
    }
    Ok(out)
}

/// A pupil of a class with the attendance saved for one day, if any.
#[derive(Debug, Clone, Serialize)]
pub struct PupilRow {
    pub id: i64,
    pub first_name: String,
    pub last_name: String,
    pub saved_present: Option<bool>,
}

pub fn pupils_with_attendance(
    conn: &Connection,
    class: i64,
    day: &str,
) -> Result<Vec<PupilRow>, StoreError> {
    let mut st = conn.prepare(
        "SELECT p.id, p.first_name, p.last_name, a.present FROM pupils p
         LEFT JOIN attendance a ON a.pupil_id = p.id AND a.class_id = p.class_id AND a.day = ?2
         WHERE p.class_id = ?1 ORDER BY p.last_name, p.first_name",
    )?;
    let rows = st
        .query_map(params![class, day], |r| {
            Ok(PupilRow {
                id: r.get(0)?,
                first_name: r.get(1)?,
                last_name: r.get(2)?,
                saved_present: r.get::<_, Option<i64>>(3)?.map(|p| p != 0),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// One pupil's mark in a saved roll call.
#[derive(Debug, Serialize)]
pub struct AttendanceRow {
    pub day: String,
    pub pupil: String,
    pub present: bool,
    pub teacher: String,
}

/// A class's saved roll calls from `from` to `to` (days as `YYYY-MM-DD`, both
/// included), newest day first, pupils by name.
pub fn attendance_history(
    c: &Connection,
    class: i64,
    from: &str,
    to: &str,
) -> Result<Vec<AttendanceRow>, StoreError> {
    let rows = c
        .prepare_cached(
            "SELECT a.day, p.first_name || ' ' || p.last_name, a.present, a.teacher
             FROM attendance a JOIN pupils p ON p.id = a.pupil_id
             WHERE a.class_id = ?1 AND a.day BETWEEN ?2 AND ?3
             ORDER BY a.day DESC, p.last_name, p.first_name",
        )?
        .query_map(params![class, from, to], |r| {
            Ok(AttendanceRow {
                day: r.get(0)?,
                pupil: r.get(1)?,
                present: r.get::<_, i64>(2)? != 0,
                teacher: r.get(3)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Saves a class's roll call for `day` (every pupil not in `present` is absent) and
/// appends one outbox event per pupil in the same transaction; returns how many
/// pupils were saved.
pub fn save_attendance(
    t: &Transaction<'_>,
    class: i64,
    day: &str,
    present: &[i64],
    teacher: &str,
    now: i64,
) -> Result<usize, StoreError> {
    let class_name: String =
        t.query_row("SELECT name FROM classes WHERE id = ?1", [class], |r| {
            r.get(0)
        })?;
    let pupils: Vec<(i64, String)> = t
        .prepare("SELECT id, first_name || ' ' || last_name FROM pupils WHERE class_id = ?1")?
        .query_map([class], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let secret: String = t.query_row(
        "SELECT value FROM meta WHERE key = 'pseudonym_secret'",
        [],
        |r| r.get(0),
    )?;
    for (id, _name) in &pupils {
        let present = present.contains(id);
        t.execute(
            "INSERT INTO attendance(class_id, day, pupil_id, present, teacher, saved_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(class_id, day, pupil_id) DO UPDATE SET present = excluded.present,
               teacher = excluded.teacher, saved_at = excluded.saved_at",
            params![class, day, id, present, teacher, now],
        )?;
        super::outbox::append(
            t,
            now,
            &cartable_protocol::events::EventBody::Attendance {
                class: class_name.clone(),
                pupil: pseudonym(&secret, *id),
                present,
            },
        )?;
    }
    Ok(pupils.len())
}

/// A pupil as printed on a QR card: id, first name, last name, card generation.
pub type CardRow = (i64, String, String, i64);

/// The class's name and its pupils' card rows.
pub fn cards(conn: &Connection, class: i64) -> Result<(String, Vec<CardRow>), StoreError> {
    let name: String = conn.query_row("SELECT name FROM classes WHERE id = ?1", [class], |r| {
        r.get(0)
    })?;
    let mut st = conn.prepare(
        "SELECT id, first_name, last_name, card_generation FROM pupils
         WHERE class_id = ?1 ORDER BY last_name, first_name",
    )?;
    let pupils = st
        .query_map([class], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok((name, pupils))
}

/// Every printed copy of a pupil's card stops working; false if no such pupil in
/// this class.
pub fn revoke_card(t: &Transaction<'_>, class: i64, pupil: i64) -> Result<bool, StoreError> {
    Ok(t.execute(
        "UPDATE pupils SET card_generation = card_generation + 1 WHERE id = ?1 AND class_id = ?2",
        params![pupil, class],
    )? == 1)
}

/// Creates or replaces (by name) a level group of `class`; `None` if a pupil is not
/// of the class.
pub fn save_group(
    t: &Transaction<'_>,
    class: i64,
    name: &str,
    pupils: &[i64],
) -> Result<Option<i64>, StoreError> {
    for p in pupils {
        let ok: i64 = t.query_row(
            "SELECT count(*) FROM pupils WHERE id = ?1 AND class_id = ?2",
            params![p, class],
            |r| r.get(0),
        )?;
        if ok == 0 {
            return Ok(None);
        }
    }
    t.execute(
        "INSERT INTO pupil_groups(class_id, name) VALUES (?1, ?2) ON CONFLICT(class_id, name) DO NOTHING",
        params![class, name],
    )?;
    let id: i64 = t.query_row(
        "SELECT id FROM pupil_groups WHERE class_id = ?1 AND name = ?2",
        params![class, name],
        |r| r.get(0),
    )?;
    t.execute("DELETE FROM pupil_group_members WHERE group_id = ?1", [id])?;
    for p in pupils {
        t.execute(
            "INSERT OR IGNORE INTO pupil_group_members(group_id, pupil_id) VALUES (?1, ?2)",
            params![id, p],
        )?;
    }
    Ok(Some(id))
}

/// A level group and its pupils.
#[derive(Debug, Clone, Serialize)]
pub struct GroupRow {
    pub id: i64,
    pub name: String,
    pub pupils: Vec<i64>,
}

pub fn groups(conn: &Connection, class: i64) -> Result<Vec<GroupRow>, StoreError> {
    let mut st = conn.prepare(
        "SELECT g.id, g.name, group_concat(m.pupil_id) FROM pupil_groups g
         LEFT JOIN pupil_group_members m ON m.group_id = g.id
         WHERE g.class_id = ?1 GROUP BY g.id ORDER BY g.name",
    )?;
    let v = st
        .query_map([class], |r| {
            let members: Option<String> = r.get(2)?;
            Ok(GroupRow {
                id: r.get(0)?,
                name: r.get(1)?,
                pupils: members
                    .unwrap_or_default()
                    .split(',')
                    .filter_map(|x| x.parse().ok())
                    .collect(),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(v)
}

/// A pupil as the central side knows them: `p` and 16 hex digits of an HMAC of their
/// id under the box's own key. The same pupil keeps the same pseudonym (usage per
/// pupil over a year), and nobody without the box's key can tell who it is.
pub fn pseudonym(secret: &str, pupil: i64) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = ring::hmac::sign(&key, format!("pupil:{pupil}").as_bytes());
    let hex: String = tag.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("p{hex}")
}

/// A screen-time rule as stored: days as `mon,tue,...`, times as `HH:MM`.
pub struct ScreenTimeRow<'a> {
    pub class: i64,
    /// 0 for the whole class.
    pub group: i64,
    pub minutes_per_day: u32,
    pub days: &'a str,
    pub from: &'a str,
    pub to: &'a str,
}

/// Saves (replacing) the rule of a class or of one of its groups; false if the group
/// is not the class's.
pub fn set_screen_time(t: &Transaction<'_>, rule: &ScreenTimeRow<'_>) -> Result<bool, StoreError> {
    if rule.group != 0 {
        let ok: i64 = t.query_row(
            "SELECT count(*) FROM pupil_groups WHERE id = ?1 AND class_id = ?2",
            params![rule.group, rule.class],
            |r| r.get(0),
        )?;
        if ok == 0 {
            return Ok(false);
        }
    }
    t.execute(
        "INSERT INTO screen_time(class_id, group_id, minutes_per_day, days, from_time, to_time)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT(class_id, group_id) DO UPDATE SET minutes_per_day = excluded.minutes_per_day,
           days = excluded.days, from_time = excluded.from_time, to_time = excluded.to_time",
        params![
            rule.class,
            rule.group,
            rule.minutes_per_day,
            rule.days,
            rule.from,
            rule.to
        ],
    )?;
    Ok(true)
}

/// The saved rule of a class (`group` 0) or of one of its groups: (minutes per day,
/// days as stored, from, to).
pub fn screen_time(
    conn: &Connection,
    class: i64,
    group: i64,
) -> Result<Option<(u32, String, String, String)>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT minutes_per_day, days, from_time, to_time FROM screen_time
             WHERE class_id = ?1 AND group_id = ?2",
            params![class, group],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?)
}

/// The school as the admin page lists it: classes, teachers and pupils as JSON rows.
pub fn overview(conn: &Connection) -> Result<[Vec<serde_json::Value>; 3], StoreError> {
    use serde_json::json;
    type Row<'r> = rusqlite::Row<'r>;
    let all = |sql: &str,
               f: &dyn Fn(&Row<'_>) -> rusqlite::Result<serde_json::Value>|
     -> Result<Vec<serde_json::Value>, StoreError> {
        let mut st = conn.prepare(sql)?;
        let v = st.query_map([], |r| f(r))?.collect::<Result<Vec<_>, _>>()?;
        Ok(v)
    };
    let classes = all("SELECT id, name, level FROM classes ORDER BY name", &|r| {
        Ok(
            json!({ "id": r.get::<_, i64>(0)?, "name": r.get::<_, String>(1)?, "level": r.get::<_, String>(2)? }),
        )
    })?;
    let teachers = all(
        "SELECT t.id, t.login, t.display_name, group_concat(c.name, '|'),
                EXISTS(SELECT 1 FROM teacher_passwords p WHERE p.teacher_id = t.id)
         FROM teachers t LEFT JOIN class_teachers ct ON ct.teacher_id = t.id
         LEFT JOIN classes c ON c.id = ct.class_id GROUP BY t.id ORDER BY t.login",
        &|r| {
            Ok(
                json!({ "id": r.get::<_, i64>(0)?, "login": r.get::<_, String>(1)?,
                "name": r.get::<_, String>(2)?, "classes": r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                "has_password": r.get::<_, bool>(4)? }),
            )
        },
    )?;
    let pupils = all(
        "SELECT p.id, p.first_name, p.last_name, c.name FROM pupils p JOIN classes c ON c.id = p.class_id
         ORDER BY c.name, p.last_name, p.first_name",
        &|r| {
            Ok(json!({ "id": r.get::<_, i64>(0)?, "first_name": r.get::<_, String>(1)?,
                "last_name": r.get::<_, String>(2)?, "class": r.get::<_, String>(3)? }))
        },
    )?;
    Ok([classes, teachers, pupils])
}

/// What the admin can delete: a class (with its pupils, by cascade), a teacher, a
/// pupil.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Classes,
    Teachers,
    Pupils,
}

impl Kind {
    pub fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "classes" => Kind::Classes,
            "teachers" => Kind::Teachers,
            "pupils" => Kind::Pupils,
            _ => return None,
        })
    }

    pub fn table(self) -> &'static str {
        match self {
            Kind::Classes => "classes",
            Kind::Teachers => "teachers",
            Kind::Pupils => "pupils",
        }
    }
}

/// Deletes one row; false if there was none.
pub fn delete(t: &Transaction<'_>, kind: Kind, id: i64) -> Result<bool, StoreError> {
    Ok(t.execute(&format!("DELETE FROM {} WHERE id = ?1", kind.table()), [id])? == 1)
}

/// A live session as stored: the teacher, their login and classes, the CSRF token.
pub struct SessionRow {
    pub teacher_id: i64,
    pub login: String,
    pub classes: Vec<i64>,
    pub csrf: String,
}

/// Whose session it is: a teacher's or an admin's (two tables, so that each goes with
/// its account by cascade).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Account {
    Teacher,
    Admin,
}

impl Account {
    /// (sessions table, its account column).
    fn sessions(self) -> (&'static str, &'static str) {
        match self {
            Account::Teacher => ("teacher_sessions", "teacher_id"),
            Account::Admin => ("admin_sessions", "admin_id"),
        }
    }
}

/// Stores a session (by the hash of its cookie) and drops the expired ones.
pub fn open_session(
    t: &Transaction<'_>,
    account: Account,
    token_hash: &[u8],
    owner: i64,
    csrf: &str,
    now: i64,
    expires_at: i64,
) -> Result<(), StoreError> {
    let (table, column) = account.sessions();
    t.execute(
        &format!("DELETE FROM {table} WHERE expires_at <= ?1"),
        [now],
    )?;
    t.execute(
        &format!(
            "INSERT INTO {table}(token_hash, {column}, csrf, expires_at) VALUES (?1, ?2, ?3, ?4)"
        ),
        params![token_hash, owner, csrf, expires_at],
    )?;
    Ok(())
}

/// The session a cookie's hash names, if it has not expired.
pub fn session(
    conn: &Connection,
    token_hash: &[u8],
    now: i64,
) -> Result<Option<SessionRow>, StoreError> {
    let row: Option<(i64, String, String)> = conn
        .query_row(
            "SELECT s.teacher_id, t.login, s.csrf FROM teacher_sessions s
             JOIN teachers t ON t.id = s.teacher_id WHERE s.token_hash = ?1 AND s.expires_at > ?2",
            params![token_hash, now],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((teacher_id, login, csrf)) = row else {
        return Ok(None);
    };
    let mut st =
        conn.prepare_cached("SELECT class_id FROM class_teachers WHERE teacher_id = ?1")?;
    let classes = st
        .query_map([teacher_id], |r| r.get::<_, i64>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(SessionRow {
        teacher_id,
        login,
        classes,
        csrf,
    }))
}

/// Ends the session a cookie's hash names, whoever's it is.
pub fn close_session(t: &Transaction<'_>, token_hash: &[u8]) -> Result<(), StoreError> {
    for account in [Account::Teacher, Account::Admin] {
        let (table, _) = account.sessions();
        t.execute(
            &format!("DELETE FROM {table} WHERE token_hash = ?1"),
            [token_hash],
        )?;
    }
    Ok(())
}

/// Bytes of documents a class holds.
pub fn documents_bytes(conn: &Connection, class: i64) -> Result<u64, StoreError> {
    Ok(conn.query_row(
        "SELECT coalesce(sum(size), 0) FROM documents WHERE class_id = ?1",
        [class],
        |r| r.get::<_, i64>(0),
    )? as u64)
}

/// Records a stored document.
pub fn add_document(
    t: &Transaction<'_>,
    id: &str,
    class: i64,
    name: &str,
    size: u64,
    now: i64,
) -> Result<(), StoreError> {
    t.execute(
        "INSERT INTO documents(id, class_id, name, size, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![id, class, name, size as i64, now],
    )?;
    Ok(())
}

/// A class's document row goes; false if the class has no such document.
pub fn delete_document(t: &Transaction<'_>, class: i64, id: &str) -> Result<bool, StoreError> {
    Ok(t.execute(
        "DELETE FROM documents WHERE id = ?1 AND class_id = ?2",
        params![id, class],
    )? == 1)
}

/// An admin's password record, for signing in.
pub struct AdminCredentials {
    pub admin_id: i64,
    pub salt: Vec<u8>,
    pub hash: Vec<u8>,
    pub iterations: u32,
}

pub fn admin_credentials(
    conn: &Connection,
    login: &str,
) -> Result<Option<AdminCredentials>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT id, salt, hash, iterations FROM admins WHERE login = ?1",
            [login],
            |r| {
                Ok(AdminCredentials {
                    admin_id: r.get(0)?,
                    salt: r.get(1)?,
                    hash: r.get(2)?,
                    iterations: r.get(3)?,
                })
            },
        )
        .optional()?)
}

/// Adds an admin, or sets the password of one; refuses a login a teacher has (the
/// sign-in page decides the role by the login). Returns whether it was new.
pub fn put_admin(
    t: &Transaction<'_>,
    login: &str,
    salt: &[u8],
    hash: &[u8],
    iterations: u32,
    now: i64,
) -> Result<Result<bool, &'static str>, StoreError> {
    let teacher: i64 = t.query_row(
        "SELECT count(*) FROM teachers WHERE login = ?1",
        [login],
        |r| r.get(0),
    )?;
    if teacher > 0 {
        return Ok(Err("a teacher has this login"));
    }
    let existing: Option<i64> = t
        .query_row("SELECT id FROM admins WHERE login = ?1", [login], |r| {
            r.get(0)
        })
        .optional()?;
    match existing {
        Some(id) => {
            t.execute(
                "UPDATE admins SET salt = ?2, hash = ?3, iterations = ?4 WHERE id = ?1",
                params![id, salt, hash, iterations],
            )?;
            // A new password ends the sessions opened with the old one.
            t.execute("DELETE FROM admin_sessions WHERE admin_id = ?1", [id])?;
            Ok(Ok(false))
        }
        None => {
            t.execute(
                "INSERT INTO admins(login, salt, hash, iterations, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![login, salt, hash, iterations, now],
            )?;
            Ok(Ok(true))
        }
    }
}

/// The admin's login and CSRF token of a live session.
pub fn admin_session(
    conn: &Connection,
    token_hash: &[u8],
    now: i64,
) -> Result<Option<(String, String)>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT a.login, s.csrf FROM admin_sessions s JOIN admins a ON a.id = s.admin_id
             WHERE s.token_hash = ?1 AND s.expires_at > ?2",
            params![token_hash, now],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

/// What the fleet's inventory needs of the store: class names by id, each device's
/// last connection and assigned pupil, and the key of the pupils' pseudonyms.
pub struct InventoryRows {
    pub classes: std::collections::HashMap<i64, String>,
    /// Device id → (last seen, assigned pupil).
    pub devices: std::collections::HashMap<i64, (i64, Option<i64>)>,
    pub secret: String,
}

pub fn inventory_rows(c: &Connection) -> Result<InventoryRows, StoreError> {
    let classes = c
        .prepare_cached("SELECT id, name FROM classes")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let devices = c
        .prepare_cached("SELECT id, last_seen, pupil_id FROM devices WHERE revoked = 0")?
        .query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))?
        .collect::<Result<_, _>>()?;
    let secret = c.query_row(
        "SELECT value FROM meta WHERE key = 'pseudonym_secret'",
        [],
        |r| r.get(0),
    )?;
    Ok(InventoryRows {
        classes,
        devices,
        secret,
    })
}

/// The class of the device named `name`, if it has one.
pub fn device_class(c: &Connection, name: &str) -> Result<Option<String>, StoreError> {
    Ok(c.prepare_cached(
        "SELECT c.name FROM devices d JOIN classes c ON c.id = d.class_id WHERE d.name = ?1",
    )?
    .query_row([name], |r| r.get(0))
    .optional()?)
}

/// Records that a device was connected at `at` (its last sighting, for the fleet).
pub fn device_seen(t: &Transaction<'_>, device: i64, at: i64) -> Result<(), StoreError> {
    t.prepare_cached("UPDATE devices SET last_seen = ?1 WHERE id = ?2")?
        .execute(params![at, device])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_pupils_pseudonym_is_stable_distinct_and_keyed() {
        let a = super::pseudonym("secret-one", 7);
        assert_eq!(a, super::pseudonym("secret-one", 7));
        assert_ne!(a, super::pseudonym("secret-one", 8));
        assert_ne!(
            a,
            super::pseudonym("secret-two", 7),
            "another box, another pseudonym"
        );
        assert_eq!(a.len(), 17);
        assert!(a.starts_with('p'));
    }
}
