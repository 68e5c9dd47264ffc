//! Importing the school from CSV files an admin exports from a spreadsheet: classes,
//! teachers (with their classes), pupils. The header row says which; `,` or `;`
//! separates fields (French spreadsheets write `;`). A file goes in whole or not at
//! all, and every bad line is reported with its number.

use rusqlite::{OptionalExtension, Transaction, params};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Kind {
    /// `class,level`
    Classes,
    /// `login,name,classes` (classes separated by `|`)
    Teachers,
    /// `first_name,last_name,class`
    Pupils,
}

/// What a file did (or, previewed, would do): its kind, its rows, and a line for each
/// row that adds or changes something (rows that change nothing are only counted).
#[derive(Debug, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Report {
    pub kind: Kind,
    pub rows: usize,
    pub added: usize,
    pub updated: usize,
    /// `+ ...` added, `~ ...` changed; the first [`MAX_CHANGES`].
    pub changes: Vec<String>,
}

/// How many change lines a report carries (the counts are always whole).
const MAX_CHANGES: usize = 500;

impl Report {
    fn note(&mut self, added: bool, line: String) {
        if added {
            self.added += 1;
        } else {
            self.updated += 1;
        }
        if self.changes.len() < MAX_CHANGES {
            self.changes.push(line);
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImportError {
    #[error(
        "the first line must be one of: `class,level`, `login,name,classes`, `first_name,last_name,class`"
    )]
    UnknownHeader,
    #[error("{}", .0.join("\n"))]
    Lines(Vec<String>),
    #[error("the store refused the import: {0}")]
    Store(String),
}

/// Splits one CSV line (quotes with doubled quotes inside).
fn fields(line: &str, sep: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            c if c == sep && !quoted => out.push(std::mem::take(&mut cur).trim().to_string()),
            c => cur.push(c),
        }
    }
    out.push(cur.trim().to_string());
    out
}

/// A login as the school's accounts have them: 1 to 64 of a-z, 0-9, `.`, `_`, `-`.
pub(crate) fn valid_login(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// Imports `text`; returns what it was, its rows, and what they added or changed.
// Long: one pass over the rows of three kinds of file, all or nothing; split by kind, the
// header checks and the error's line numbers would be repeated three times.
pub(crate) fn import(tx: &Transaction<'_>, text: &str) -> Result<Report, ImportError> {
    let text = text.trim_start_matches('\u{feff}');
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines.next().ok_or(ImportError::UnknownHeader)?;
    let sep = if header.contains(';') { ';' } else { ',' };
    let head: Vec<String> = fields(header, sep)
        .into_iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    let kind = match head
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["class", "level"] => Kind::Classes,
        ["login", "name", "classes"] => Kind::Teachers,
        ["first_name", "last_name", "class"] => Kind::Pupils,
        _ => return Err(ImportError::UnknownHeader),
    };
    let store = |e: rusqlite::Error| ImportError::Store(e.to_string());
    let class_id = |name: &str| -> Result<Option<i64>, ImportError> {
        tx.query_row("SELECT id FROM classes WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .optional()
        .map_err(store)
    };
    let mut errors = Vec::new();
    let mut report = Report {
        kind,
        rows: 0,
        added: 0,
        updated: 0,
        changes: Vec::new(),
    };
    for (i, line) in lines {
        let n = i + 1;
        let f = fields(line, sep);
        if f.len() != head.len() {
            errors.push(format!(
                "line {n}: {} fields, expected {}",
                f.len(),
                head.len()
            ));
            continue;
        }
        if f.iter().any(|x| x.chars().count() > 200) {
            errors.push(format!("line {n}: a field is longer than 200 characters"));
            continue;
        }
        match kind {
            Kind::Classes => {
                if f[0].is_empty() {
                    errors.push(format!("line {n}: the class has no name"));
                    continue;
                }
                let before: Option<String> = tx
                    .query_row("SELECT level FROM classes WHERE name = ?1", [&f[0]], |r| {
                        r.get(0)
                    })
                    .optional()
                    .map_err(store)?;
                match before {
                    None => report.note(true, format!("+ {} ({})", f[0], f[1])),
                    Some(level) if level != f[1] => {
                        report.note(false, format!("~ {}: {level} → {}", f[0], f[1]));
                    }
                    Some(_) => {}
                }
                tx.execute(
                    "INSERT INTO classes(name, level) VALUES (?1, ?2)
                     ON CONFLICT(name) DO UPDATE SET level = excluded.level",
                    params![f[0], f[1]],
                )
                .map_err(store)?;
            }
            Kind::Teachers => {
                if !valid_login(&f[0]) {
                    errors.push(format!(
                        "line {n}: login `{}` must be 1 to 64 of a-z, 0-9, `.`, `_`, `-`",
                        f[0]
                    ));
                    continue;
                }
                let mut ids = Vec::new();
                for class in f[2].split('|').map(str::trim).filter(|c| !c.is_empty()) {
                    match class_id(class)? {
                        Some(id) => ids.push(id),
                        None => errors.push(format!(
                            "line {n}: no class `{class}` (import the classes first)"
                        )),
                    }
                }
                let before: Option<String> = tx
                    .query_row(
                        "SELECT display_name FROM teachers WHERE login = ?1",
                        [&f[0]],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(store)?;
                match before {
                    None => report.note(true, format!("+ {} ({}): {}", f[0], f[1], f[2])),
                    Some(name) if name != f[1] => {
                        report.note(false, format!("~ {}: {name} → {}", f[0], f[1]));
                    }
                    Some(_) => {}
                }
                tx.execute(
                    "INSERT INTO teachers(login, display_name) VALUES (?1, ?2)
                     ON CONFLICT(login) DO UPDATE SET display_name = excluded.display_name",
                    params![f[0], f[1]],
                )
                .map_err(store)?;
                let teacher: i64 = tx
                    .query_row("SELECT id FROM teachers WHERE login = ?1", [&f[0]], |r| {
                        r.get(0)
                    })
                    .map_err(store)?;
                tx.execute(
                    "DELETE FROM class_teachers WHERE teacher_id = ?1",
                    [teacher],
                )
                .map_err(store)?;
                for id in ids {
                    tx.execute(
                        "INSERT OR IGNORE INTO class_teachers(class_id, teacher_id) VALUES (?1, ?2)",
                        params![id, teacher],
                    )
                    .map_err(store)?;
                }
            }
            Kind::Pupils => {
                if f[0].is_empty() && f[1].is_empty() {
                    errors.push(format!("line {n}: the pupil has no name"));
                    continue;
                }
                let Some(class) = class_id(&f[2])? else {
                    errors.push(format!(
                        "line {n}: no class `{}` (import the classes first)",
                        f[2]
                    ));
                    continue;
                };
                let exists: bool = tx
                    .query_row(
                        "SELECT count(*) FROM pupils WHERE class_id = ?1 AND first_name = ?2 AND last_name = ?3",
                        params![class, f[0], f[1]],
                        |r| r.get::<_, i64>(0),
                    )
                    .map_err(store)?
                    > 0;
                if !exists {
                    report.note(true, format!("+ {} {} ({})", f[0], f[1], f[2]));
                    tx.execute(
                        "INSERT INTO pupils(class_id, first_name, last_name) VALUES (?1, ?2, ?3)",
                        params![class, f[0], f[1]],
                    )
                    .map_err(store)?;
                }
            }
        }
        report.rows += 1;
    }
    if errors.is_empty() {
        Ok(report)
    } else {
        Err(ImportError::Lines(errors))
    }
}

/// Imports a whole file in one store write: all of it, or nothing. With `preview`,
/// says what it would do and changes nothing (the rows go in inside a savepoint that
/// is rolled back).
pub(crate) async fn import_csv(
    store: &crate::store::Store,
    text: String,
    preview: bool,
) -> Result<Report, ImportError> {
    let written = store
        .write(move |t| {
            if !preview {
                return Ok(import(t, &text)?);
            }
            t.execute_batch("SAVEPOINT preview")?;
            let report = import(t, &text);
            t.execute_batch("ROLLBACK TO preview; RELEASE preview")?;
            Ok(report?)
        })
        .await;
    match written {
        Ok(r) => Ok(r),
        Err(crate::store::StoreError::Import(e)) => Err(e),
        Err(e) => Err(ImportError::Store(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    async fn run(store: &Store, text: &'static str) -> Result<(Kind, usize), ImportError> {
        import_csv(store, text.to_string(), false)
            .await
            .map(|r| (r.kind, r.rows))
    }

    #[tokio::test]
    async fn classes_teachers_and_pupils_import_and_bad_lines_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            run(&store, "\u{feff}class;level\nCM1-A;CM1\n6e-B;6e\n").await,
            Ok((Kind::Classes, 2))
        );
        assert_eq!(
            run(
                &store,
                "login,name,classes\nmarie.curie,\"Curie, Marie\",CM1-A|6e-B\n"
            )
            .await,
            Ok((Kind::Teachers, 1))
        );
        assert_eq!(
            run(
                &store,
                "first_name,last_name,class\nLéa,Martin,CM1-A\nLéa,Martin,CM1-A\n"
            )
            .await,
            Ok((Kind::Pupils, 2))
        );
        let Err(ImportError::Lines(errors)) = run(
            &store,
            "first_name,last_name,class\nZoé,Blanc,CM1-A\nTom,Petit,CM9\nonly,two\n",
        )
        .await
        else {
            panic!("bad lines accepted")
        };
        assert!(
            errors[0].starts_with("line 3:") && errors[0].contains("CM9"),
            "{errors:?}"
        );
        assert!(errors[1].starts_with("line 4:"), "{errors:?}");
        assert_eq!(
            run(&store, "name\nx\n").await,
            Err(ImportError::UnknownHeader)
        );
        let counts = store.read(crate::store::school::counts).await.unwrap();
        // Zoé's good line went with the bad file: all or nothing.
        assert_eq!((counts.classes, counts.teachers, counts.pupils), (2, 1, 1));
        let teaches: i64 = store
            .read(|c| Ok(c.query_row("SELECT count(*) FROM class_teachers", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(teaches, 2);
    }

    #[tokio::test]
    async fn a_preview_says_what_would_change_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        run(&store, "class,level\nCM1-A,CM1\n").await.unwrap();
        let text = "class,level\nCM1-A,CM2\nCE2-B,CE2\n6e,6e\n".to_string();
        let preview = import_csv(&store, text.clone(), true).await.unwrap();
        assert_eq!((preview.rows, preview.added, preview.updated), (3, 2, 1));
        assert_eq!(
            preview.changes,
            ["~ CM1-A: CM1 → CM2", "+ CE2-B (CE2)", "+ 6e (6e)"]
        );
        let counts = store.read(crate::store::school::counts).await.unwrap();
        assert_eq!(counts.classes, 1);
        // The same file imported for real does what the preview said.
        let done = import_csv(&store, text, false).await.unwrap();
        assert_eq!(done, preview);
        let counts = store.read(crate::store::school::counts).await.unwrap();
        assert_eq!(counts.classes, 3);
    }
}
