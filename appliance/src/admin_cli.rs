//! `cartable admin add`: an admin account, made through the running daemon's admin
//! API (on loopback, where the box trusts its own processes) so the store keeps one
//! writer; with no daemon running, straight in the store.

use crate::config::Config;
use crate::store::{Store, school};

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
    let valid = !login.is_empty()
        && login.len() <= 64
        && login
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    anyhow::ensure!(valid, "a login has 1 to 64 of a-z, 0-9, `.`, `_` and `-`");
    anyhow::ensure!(
        password.chars().count() >= 8 && password.len() <= 200,
        "a password has 8 to 200 characters"
    );
    let iterations = crate::hub::auth::PBKDF2_ITERATIONS;
    let (salt, hash) = crate::hub::auth::hash_password(password, iterations);
    let store = Store::open(&config.appliance.data_dir)?;
    let (login_owned, now) = (login.to_string(), crate::base::clock::unix_now());
    let done = store
        .write(move |t| {
            let added = school::put_admin(t, &login_owned, &salt, &hash, iterations, now)?;
            if let Ok(added) = added {
                let action = if added {
                    "admin added"
                } else {
                    "admin password set"
                };
                crate::store::outbox::append(
                    t,
                    now,
                    &cartable_protocol::events::EventBody::Audit {
                        actor: "cartable admin add".into(),
                        action: action.into(),
                        detail: login_owned.clone(),
                    },
                )?;
            }
            Ok(added)
        })
        .await;
    let store_path = store.path().display().to_string();
    tokio::task::spawn_blocking(move || store.close()).await?;
    match done? {
        Ok(true) => Ok(format!("admin {login} added (in {store_path})")),
        Ok(false) => Ok(format!("admin {login}: new password set (in {store_path})")),
        Err(why) => anyhow::bail!("{why}"),
    }
}
