//! People and classes: who teaches what, and which pupils are in each class.

use rusqlite::{Connection, Transaction, params};
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
