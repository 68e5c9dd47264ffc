//! The prefetcher: fetches the catalogue's missing pinned objects by priority, one at
//! a time, inside the configured windows and under the rate cap, and re-reads the
//! catalogue when woken or on SIGHUP (a local catalogue file edited by the admin).
//! An unpinned item is not prefetched: it comes on a tablet's first request (the weak
//! link carries what is used, not all that might be), and goes first when the quota
//! is reached.
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
            let mut hangup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
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
                        Some(()) = hangup.recv() => {
                            tracing::info!("SIGHUP: reading the catalogue again");
                        }
                        _ = shutdown.cancelled() => return Ok(()),
                    }
                } else if shutdown.is_cancelled() {
                    return Ok(());
                }
            }
        })
    }
}

/// The missing pinned item to fetch next, by priority, skipping items waiting out a
/// backoff.
fn next_item(cache: &Cache) -> Option<cartable_protocol::desired::CatalogueItem> {
    let catalogue = cache.catalogue();
    let failures = cache.failures.lock().map(|f| f.clone()).unwrap_or_default();
    let now = Instant::now();
    choose(
        &catalogue.items,
        |i| Sha256::parse(&i.sha256).is_some_and(|s| cache.objects.contains(&s)),
        |i| {
            failures
                .get(&i.sha256.to_ascii_lowercase())
                .is_some_and(|f| f.retry_at > now)
        },
    )
}

/// Of `items`, the pinned one not `held` and not `waiting`, lowest priority first.
fn choose(
    items: &[cartable_protocol::desired::CatalogueItem],
    held: impl Fn(&cartable_protocol::desired::CatalogueItem) -> bool,
    waiting: impl Fn(&cartable_protocol::desired::CatalogueItem) -> bool,
) -> Option<cartable_protocol::desired::CatalogueItem> {
    items
        .iter()
        .filter(|i| i.pinned && !held(i) && !waiting(i))
        .min_by_key(|i| i.priority)
        .cloned()
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

#[cfg(test)]
mod tests {
    use cartable_protocol::desired::CatalogueItem;

    fn item(id: &str, pinned: bool, priority: i32) -> CatalogueItem {
        serde_json::from_value(serde_json::json!({
            "id": id, "version": "1", "urls": ["http://o/x"], "size": 1,
            "sha256": "00", "pinned": pinned, "priority": priority,
        }))
        .unwrap()
    }

    #[test]
    fn only_pinned_items_are_prefetched_by_priority() {
        let items = [
            item("free", false, 0),
            item("late", true, 5),
            item("first", true, 1),
        ];
        let next = |held: &[&str], waiting: &[&str]| {
            super::choose(
                &items,
                |i| held.contains(&i.id.as_str()),
                |i| waiting.contains(&i.id.as_str()),
            )
            .map(|i| i.id)
        };
        assert_eq!(next(&[], &[]).as_deref(), Some("first"));
        assert_eq!(next(&["first"], &[]).as_deref(), Some("late"));
        assert_eq!(next(&[], &["first"]).as_deref(), Some("late"));
        assert_eq!(
            next(&["first", "late"], &[]),
            None,
            "an unpinned item waits for a tablet"
        );
    }
}
