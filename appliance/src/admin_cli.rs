//! `cartable admin add`: an admin account, made through the running daemon's admin
//! API (on loopback, where the box trusts its own processes) so the store keeps one
//! writer; with no daemon running, straight in the store.

use crate::config::Config;
use crate::store::Store;

/// Adds `login` (or sets its password); says how.
pub async fn add(config: &Config, login: &str, password: &str) -> anyhow::Result<String> {
    let addr = crate::status_client::local_address(config.http.listen);
    let body = serde_json::json!({ "login": login, "password": password }).to_string();
    let headers = [("content-type", "application/json")];
    let path = "/api/v1/admin/admins";
    match cartable_agent::http::request(addr, "POST", path, &headers, Some(&body)).await {
        Ok(r) if r.status == 201 => Ok(format!(
            "admin {login} added (through the daemon on {addr})"
        )),
        Ok(r) if r.status == 204 => Ok(format!(
            "admin {login}: new password set (through the daemon on {addr})"
        )),
        Ok(r) => anyhow::bail!(
            "the daemon on {addr} refused: {} {}",
            r.status,
            r.body.trim()
        ),
        Err(_) => add_offline(config, login, password).await,
    }
}

/// No daemon answers: this process is the store's only writer.
async fn add_offline(config: &Config, login: &str, password: &str) -> anyhow::Result<String> {
    use crate::hub::auth::{AdminRefused, put_admin};
    let store = Store::open(&config.appliance.data_dir)?;
    let now = crate::base::clock::unix_now();
    let done = put_admin(&store, login, password, now, "cartable admin add".into()).await;
    let store_path = store.path().display().to_string();
    tokio::task::spawn_blocking(move || store.close()).await?;
    match done {
        Ok(true) => Ok(format!("admin {login} added (in {store_path})")),
        Ok(false) => Ok(format!("admin {login}: new password set (in {store_path})")),
        Err(AdminRefused::Invalid(why) | AdminRefused::Taken(why)) => anyhow::bail!("{why}"),
        Err(AdminRefused::Store(e)) => Err(e.into()),
    }
}
