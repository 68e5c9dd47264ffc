//! The prefetcher: fetches the catalogue's missing objects, pinned ones first then by
//! priority, one at a time, inside the configured windows and under the rate cap.
//! A failed item waits (capped exponential backoff with jitter) before its next try;
//! a download cut short resumes where it stopped. Progress shows in
//! `/api/v1/status` and each outcome goes to the outbox.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::objects::Sha256;
use super::{Cache, Failure, IDLE};
use crate::base::backoff::Backoff;
use crate::supervisor::{Service, ServiceCtx, ServiceFuture};

pub(crate) struct PrefetchService {
    cache: Arc<Cache>,
}

impl PrefetchService {
    pub(crate) fn new(cache: Arc<Cache>) -> PrefetchService {
        PrefetchService { cache }
    }
}

impl Service for PrefetchService {
    fn name(&self) -> &'static str {
        "cache"
    }

    fn run(self: Arc<Self>, ctx: ServiceCtx) -> ServiceFuture {
        Box::pin(async move {
            let shutdown = ctx.shutdown.clone();
            let cache = self.cache.clone();
            cache.reconcile().await?;
            cache.refresh_catalogue().await;
            ctx.ready();
            let mut backoffs: std::collections::HashMap<String, Backoff> = Default::default();
            let mut seed = std::process::id() as u64 ^ super::now() as u64;
            loop {
                cache.flush_touches().await;
                cache.refresh_catalogue().await;
                let next = if cache.in_window() {
                    next_item(&cache)
                } else {
                    None
                };
                let wait = match next {
                    None => Some(IDLE.min(until_next_retry(&cache))),
                    Some(item) => {
                        let fill = cache.fill(&item, true);
                        let outcome = tokio::select! {
                            r = fill.done() => r,
                            _ = shutdown.cancelled() => return Ok(()),
                        };
                        let key = item.sha256.to_ascii_lowercase();
                        match outcome {
                            Ok(()) => {
                                backoffs.remove(&key);
                            }
                            Err(why) => {
                                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                                let b = backoffs.entry(key.clone()).or_insert_with(|| {
                                    Backoff::new(
                                        Duration::from_secs(1),
                                        Duration::from_secs(cache.config().retry_max_secs),
                                        seed,
                                    )
                                });
                                let wait = b.next_wait();
                                if let Ok(mut f) = cache.failures.lock() {
                                    f.insert(
                                        key,
                                        Failure {
                                            error: why.to_string(),
                                            retry_at: Instant::now() + wait,
                                        },
                                    );
                                }
                            }
                        }
                        None
                    }
                };
                if let Some(wait) = wait {
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = cache.wake.notified() => {}
                        _ = shutdown.cancelled() => return Ok(()),
                    }
                } else if shutdown.is_cancelled() {
                    return Ok(());
                }
            }
        })
    }
}

/// The missing item to fetch next: pinned first, then by priority, skipping items
/// waiting out a backoff.
fn next_item(cache: &Cache) -> Option<cartable_protocol::desired::CatalogueItem> {
    let catalogue = cache.catalogue();
    let failures = cache.failures.lock().map(|f| f.clone()).unwrap_or_default();
    let now = Instant::now();
    let mut todo: Vec<_> = catalogue
        .items
        .iter()
        .filter(|i| {
            Sha256::parse(&i.sha256).is_some_and(|s| !cache.objects.contains(&s))
                && failures
                    .get(&i.sha256.to_ascii_lowercase())
                    .is_none_or(|f| f.retry_at <= now)
        })
        .collect();
    todo.sort_by_key(|i| (!i.pinned, i.priority));
    todo.first().map(|i| (*i).clone())
}

fn until_next_retry(cache: &Cache) -> Duration {
    let now = Instant::now();
    cache
        .failures
        .lock()
        .ok()
        .and_then(|f| f.values().map(|f| f.retry_at).min())
        .map_or(IDLE, |t| {
            t.saturating_duration_since(now)
                .max(Duration::from_millis(50))
        })
}
