//! Writes rows through the appliance's store as fast as it can, from several tasks at
//! once, and prints `committed ID` for each write the store reported durable. The
//! durability test kills it with SIGKILL and checks every printed id is on disk.

use std::io::Write;

use cartable::store::Store;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .expect("usage: durability-writer DATA_DIR");
    let store = Store::open(std::path::Path::new(&dir))?;
    store
        .write(|t| {
            t.execute_batch("CREATE TABLE IF NOT EXISTS probe (id TEXT PRIMARY KEY, pad BLOB)")?;
            Ok(())
        })
        .await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let run = std::process::id();
    for task in 0..8 {
        let store = store.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            for i in 0u64.. {
                let id = format!("{run}-{task}-{i}");
                let row = id.clone();
                let written = store
                    .write(move |t| {
                        t.execute(
                            "INSERT INTO probe(id, pad) VALUES (?1, zeroblob(200))",
                            [row],
                        )?;
                        Ok(())
                    })
                    .await;
                if let Err(e) = written {
                    eprintln!("durability-writer: write {id} failed: {e}");
                    return;
                }
                if tx.send(id).is_err() {
                    return;
                }
            }
        });
    }
    drop(tx);
    let mut out = std::io::stdout().lock();
    while let Some(id) = rx.recv().await {
        writeln!(out, "committed {id}")?;
        out.flush()?;
    }
    Ok(())
}
