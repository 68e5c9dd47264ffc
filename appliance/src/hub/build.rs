//! Building the hub from its `[hub]` section: the registry loaded from the store,
//! Headwind when its secret is set, the routes, and the supervised services.

use std::sync::Arc;
use std::time::Duration;

use super::{Hub, RulesSink, api, headwind, screen_time};
use crate::base::clock::Clock;
use crate::config::HubConfig;
use crate::store::{Store, StoreError};

/// What the hub is built with, besides its own `[hub]` section.
pub struct HubDeps {
    pub store: Store,
    /// School-local time: "today" for attendance, screen-time days.
    pub clock: Clock,
    /// Shared documents go under `data_dir/documents`.
    pub data_dir: std::path::PathBuf,
    pub rules: Option<RulesSink>,
    /// The box's site (`[appliance] site`): the school's name when `[hub]
    /// school_name` is not set.
    pub site: String,
    /// In a cart, the access point a reset tablet's provisioning QR joins.
    pub wifi: Option<super::provisioning::Wifi>,
}

/// The hub, its routes, and its supervised services (screen time, and the Headwind
/// reaper when Headwind is on).
pub struct HubParts {
    pub hub: Arc<Hub>,
    pub routes: axum::Router,
    /// Tells the other services' admin routes a signed-in admin (the hub owns the
    /// sessions).
    pub admin_check: crate::base::http::AdminCheck,
    pub services: Vec<Arc<dyn crate::supervisor::Service>>,
}

impl HubConfig {
    pub fn build(&self, deps: HubDeps) -> Result<HubParts, StoreError> {
        let ttl = Duration::from_secs(self.one_shot_ttl_secs);
        let hub = Arc::new(Hub::load(
            deps.store.clone(),
            deps.clock.clone(),
            deps.rules,
            ttl,
        )?);
        let headwind = self.headwind_secret.clone().map(|secret| {
            Arc::new(headwind::Headwind::new(
                secret,
                self.headwind_project.clone(),
                self.wipe_packages.clone(),
                self.wipe_dirs.clone(),
            ))
        });
        let state = api::HubState {
            hub: hub.clone(),
            documents: deps.data_dir.join("documents"),
            clock: deps.clock.clone(),
            school: if self.school_name.is_empty() {
                deps.site.clone()
            } else {
                self.school_name.clone()
            },
            provisioning: self
                .headwind_apk_sha256
                .clone()
                .filter(|_| headwind.is_some())
                .map(|apk| super::provisioning::Provisioning {
                    apk,
                    project: self.headwind_project.clone(),
                    wifi: deps.wifi.clone(),
                }),
        };
        let mut services: Vec<Arc<dyn crate::supervisor::Service>> =
            vec![Arc::new(screen_time::ScreenTimeService::new(
                hub.clone(),
                deps.store,
                deps.clock.clone(),
                Duration::from_secs(self.screen_time_tick_secs.max(1)),
            ))];
        if let Some(hw) = &headwind {
            services.push(Arc::new(headwind::Reaper {
                hub: hub.clone(),
                hw: hw.clone(),
            }));
        }
        Ok(HubParts {
            admin_check: api::admin_check(hub.clone()),
            routes: api::routes(state, headwind),
            hub,
            services,
        })
    }
}
