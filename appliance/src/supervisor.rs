//! Starts every service as a task from one place, restarts a failed one with backoff
//! without touching the others, stops them in reverse order on shutdown, and tells
//! systemd when the box is ready and still alive.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use cartable_protocol::status::{ServiceState, ServiceStatus};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};

/// What a service's `run` returns.
pub(crate) type ServiceFuture = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// A long-lived part of the daemon (DNS, HTTP, sync, ...).
///
/// `run` serves until `ctx.shutdown` is cancelled, then returns `Ok(())` promptly.
/// Returning at any other time, with or without an error, counts as a failure and the
/// supervisor calls `run` again after a backoff, so `run` must be restartable: bind
/// sockets once when the service is built, not in `run`.
pub trait Service: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    fn run(self: Arc<Self>, ctx: ServiceCtx) -> ServiceFuture;
    /// How long `run` may take to return once its token is cancelled before it is
    /// aborted. The daemon must exit within 5 s in all, so only a service with a last
    /// write to make (the DNS cache) asks for more than the default.
    fn stop_grace(&self) -> Duration {
        STOP_GRACE
    }
}

/// What the supervisor hands a running service.
#[derive(Clone)]
pub struct ServiceCtx {
    pub shutdown: CancellationToken,
    health: Health,
    index: usize,
}

impl ServiceCtx {
    /// Says the service is serving (listeners bound, first load done).
    pub fn ready(&self) {
        self.health.set(self.index, ServiceState::Running, None);
    }

    /// Says what the service, though running, fails to do (empty: nothing).
    pub fn problems(&self, problems: Vec<String>) {
        self.health.set_problems(self.index, problems);
    }
}

/// The live state of every service, shared with `/healthz` and `/api/v1/status`.
#[derive(Clone, Default)]
pub(crate) struct Health {
    inner: Arc<RwLock<Vec<ServiceStatus>>>,
    changed: Arc<watch::Sender<()>>,
}

impl Health {
    pub(crate) fn snapshot(&self) -> Vec<ServiceStatus> {
        self.inner.read().map(|v| v.clone()).unwrap_or_default()
    }

    fn register(&self, name: &str) -> usize {
        let mut v = self.inner.write().unwrap_or_else(|e| e.into_inner());
        v.push(ServiceStatus {
            name: name.to_string(),
            state: ServiceState::Starting,
            restarts: 0,
            last_error: None,
            problems: Vec::new(),
        });
        v.len() - 1
    }

    fn set(&self, index: usize, state: ServiceState, error: Option<String>) {
        {
            let mut v = self.inner.write().unwrap_or_else(|e| e.into_inner());
            let Some(s) = v.get_mut(index) else { return };
            if state == ServiceState::Failed {
                s.restarts += 1;
            }
            s.state = state;
            if error.is_some() {
                s.last_error = error;
            }
        }
        self.changed.send_replace(());
    }

    fn set_problems(&self, index: usize, problems: Vec<String>) {
        {
            let mut v = self.inner.write().unwrap_or_else(|e| e.into_inner());
            let Some(s) = v.get_mut(index) else { return };
            if s.problems == problems {
                return;
            }
            s.problems = problems;
        }
        self.changed.send_replace(());
    }

    fn all_running(&self) -> bool {
        let v = self.inner.read().unwrap_or_else(|e| e.into_inner());
        v.iter().all(|s| s.state == ServiceState::Running)
    }

    fn failing(&self) -> Vec<String> {
        self.snapshot()
            .into_iter()
            .filter(|s| s.state != ServiceState::Running)
            .map(|s| s.name)
            .collect()
    }
}

/// Backoff before the n-th restart in a row: 200 ms doubling, at most 30 s.
fn backoff(attempt: u32) -> Duration {
    crate::base::backoff::doubling(Duration::from_millis(200), Duration::from_secs(30), attempt)
}

/// A service that ran this long before failing starts its backoff over.
const STABLE_AFTER: Duration = Duration::from_secs(60);

/// How long each service has to stop; the daemon must exit within 5 s in all.
const STOP_GRACE: Duration = Duration::from_millis(1200);

/// The services of one daemon, in start order.
pub(crate) struct Supervisor {
    services: Vec<Arc<dyn Service>>,
    health: Health,
}

impl Supervisor {
    pub(crate) fn new(health: Health) -> Self {
        Supervisor {
            services: Vec::new(),
            health,
        }
    }

    pub(crate) fn add(&mut self, service: Arc<dyn Service>) {
        self.services.push(service);
    }

    /// Runs every service until `shutdown`, then stops them in reverse order.
    /// `on_ready` is called once, when every service has said it is ready.
    pub(crate) async fn run(self, shutdown: CancellationToken, on_ready: impl FnOnce()) {
        let mut keepers = Vec::new();
        for service in self.services {
            let index = self.health.register(service.name());
            let token = CancellationToken::new();
            let ctx = ServiceCtx {
                shutdown: token.clone(),
                health: self.health.clone(),
                index,
            };
            let (name, grace) = (service.name(), service.stop_grace());
            let span = info_span!("service", name);
            let handle = tokio::spawn(keep(service, ctx).instrument(span));
            keepers.push((name, grace, token, handle));
        }

        let mut changed = self.health.changed.subscribe();
        let ready = async {
            while !self.health.all_running() {
                if changed.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::select! {
            _ = ready => {
                info!(services = keepers.len(), "all services ready");
                notify(&[sd_notify::NotifyState::Ready]);
                on_ready();
            }
            _ = shutdown.cancelled() => {}
        }

        let mut watchdog = sd_notify::watchdog_enabled().map(|t| tokio::time::interval(t / 2));
        let mut changed = self.health.changed.subscribe();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick(&mut watchdog) => notify(&[sd_notify::NotifyState::Watchdog]),
                r = changed.changed() => {
                    if r.is_err() { break; }
                    let failing = self.health.failing();
                    let status = if failing.is_empty() {
                        "all services running".to_string()
                    } else {
                        format!("not running: {}", failing.join(", "))
                    };
                    notify(&[sd_notify::NotifyState::Status(&status)]);
                }
            }
        }

        notify(&[sd_notify::NotifyState::Stopping]);
        for (name, grace, token, handle) in keepers.into_iter().rev() {
            token.cancel();
            if tokio::time::timeout(grace + Duration::from_millis(100), handle)
                .await
                .is_err()
            {
                warn!(service = name, "did not stop in time");
            }
        }
        info!("all services stopped");
    }
}

async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

fn notify(state: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(state) {
        warn!(error = %e, "cannot notify systemd");
    }
}

/// Runs one service, restarting it after each failure, until its token is cancelled.
async fn keep(service: Arc<dyn Service>, ctx: ServiceCtx) {
    let health = ctx.health.clone();
    let token = ctx.shutdown.clone();
    let mut attempt = 0u32;
    loop {
        health.set(ctx.index, ServiceState::Starting, None);
        let started = Instant::now();
        let mut task = tokio::spawn(service.clone().run(ctx.clone()).in_current_span());
        let outcome = tokio::select! {
            r = &mut task => r,
            _ = token.cancelled() => match tokio::time::timeout(service.stop_grace(), &mut task).await {
                Ok(r) => r,
                Err(_) => {
                    task.abort();
                    warn!("aborted after the stop grace period");
                    Ok(Ok(()))
                }
            },
        };
        if token.is_cancelled() {
            if let Ok(Err(e)) = &outcome {
                warn!(error = format!("{e:#}"), "failed while stopping");
            }
            health.set(ctx.index, ServiceState::Stopped, None);
            return;
        }
        let cause = match outcome {
            Ok(Ok(())) => "stopped without being asked to".to_string(),
            Ok(Err(e)) => format!("{e:#}"),
            Err(join) if join.is_panic() => {
                let p = join.into_panic();
                let msg = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                format!("panicked: {msg}")
            }
            Err(join) => format!("task ended: {join}"),
        };
        if started.elapsed() >= STABLE_AFTER {
            attempt = 0;
        }
        let delay = backoff(attempt);
        attempt = attempt.saturating_add(1);
        error!(cause = %cause, retry_in_ms = delay.as_millis() as u64, "service failed");
        health.set(ctx.index, ServiceState::Failed, Some(cause));
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = token.cancelled() => {
                health.set(ctx.index, ServiceState::Stopped, None);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Fails its first `fails` runs, then serves until told to stop.
    struct Flaky {
        runs: AtomicU32,
        fails: u32,
        panics: bool,
    }

    impl Service for Flaky {
        fn name(&self) -> &'static str {
            "flaky"
        }
        fn run(self: Arc<Self>, ctx: ServiceCtx) -> ServiceFuture {
            Box::pin(async move {
                let n = self.runs.fetch_add(1, Ordering::SeqCst);
                if n < self.fails {
                    if self.panics {
                        panic!("run {n} exploded");
                    }
                    anyhow::bail!("run {n} failed");
                }
                ctx.ready();
                ctx.shutdown.cancelled().await;
                Ok(())
            })
        }
    }

    struct Steady;

    impl Service for Steady {
        fn name(&self) -> &'static str {
            "steady"
        }
        fn run(self: Arc<Self>, ctx: ServiceCtx) -> ServiceFuture {
            Box::pin(async move {
                ctx.ready();
                ctx.shutdown.cancelled().await;
                Ok(())
            })
        }
    }

    async fn run_until_ready(flaky: Arc<Flaky>) -> Vec<ServiceStatus> {
        let health = Health::default();
        let mut sup = Supervisor::new(health.clone());
        sup.add(Arc::new(Steady));
        sup.add(flaky);
        let shutdown = CancellationToken::new();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let run = tokio::spawn(sup.run(shutdown.clone(), move || {
            let _ = tx.send(());
        }));
        rx.await.unwrap();
        let at_ready = health.snapshot();
        shutdown.cancel();
        run.await.unwrap();
        assert!(
            health
                .snapshot()
                .iter()
                .all(|s| s.state == ServiceState::Stopped),
            "{:?}",
            health.snapshot()
        );
        at_ready
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_service_is_restarted_and_the_others_keep_running() {
        let flaky = Arc::new(Flaky {
            runs: AtomicU32::new(0),
            fails: 3,
            panics: false,
        });
        let status = run_until_ready(flaky.clone()).await;
        assert_eq!(flaky.runs.load(Ordering::SeqCst), 4);
        assert_eq!(status[0].restarts, 0);
        assert_eq!(status[1].restarts, 3);
        assert_eq!(status[1].last_error.as_deref(), Some("run 2 failed"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_service_is_restarted() {
        let flaky = Arc::new(Flaky {
            runs: AtomicU32::new(0),
            fails: 1,
            panics: true,
        });
        let status = run_until_ready(flaky).await;
        assert_eq!(status[1].restarts, 1);
        assert!(
            status[1]
                .last_error
                .as_deref()
                .unwrap()
                .contains("run 0 exploded"),
            "{status:?}"
        );
    }
}
