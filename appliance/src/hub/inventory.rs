//! The box's tablets as the fleet's inventory sees them (the retained state message
//! carries them): name, class, model, OS, agent, battery, connected or when last seen,
//! and the assigned pupil as a pseudonym, never a name (RGPD: the fleet needs which
//! tablets are used, not by whom).

use cartable_protocol::events::{DeviceReport, MAX_DEVICES_REPORTED};

use super::{Hub, lock};
use crate::store::school;

impl Hub {
    /// Every enrolled tablet, live state from the registry, the rest from the store.
    pub async fn inventory(&self) -> Result<Vec<DeviceReport>, crate::store::StoreError> {
        let rows = self.store.read(school::inventory_rows).await?;
        let now = self.clock.unix();
        let reg = lock(&self.registry);
        let mut out: Vec<DeviceReport> = reg
            .devices
            .iter()
            .map(|(id, d)| {
                let (last_seen, assigned) = rows.devices.get(id).copied().unwrap_or((0, None));
                DeviceReport {
                    name: d.name.clone(),
                    class: d.class_id.and_then(|c| rows.classes.get(&c).cloned()),
                    pupil: assigned.map(|p| school::pseudonym(&rows.secret, p)),
                    model: d.reported.model.clone(),
                    os: d.reported.os.clone(),
                    agent: d.reported.agent.clone(),
                    battery: d.reported.battery,
                    connected: d.conn.is_some(),
                    last_seen: if d.conn.is_some() { now } else { last_seen },
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out.truncate(MAX_DEVICES_REPORTED);
        Ok(out)
    }

    /// Keeps when a tablet was last connected (at its connection and its end), off
    /// the caller's path: a lost write only makes "last seen" older.
    pub(super) fn seen(&self, device: i64) {
        let (store, at) = (self.store.clone(), self.clock.unix());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = store
                    .write(move |t| school::device_seen(t, device, at))
                    .await
                {
                    tracing::warn!(error = %e, device, "cannot record when a tablet was last seen");
                }
            });
        }
    }
}
