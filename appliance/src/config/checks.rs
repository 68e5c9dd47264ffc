//! The checks that need more than one key, or more than the file: the policies must
//! form a usable set, the cache's redirect needs the box's address, and every
//! category a written policy blocks must be one the lists provide.

use super::{Config, Problem};

impl Config {
    /// `[net]`'s checks that need more than one key, each at its section's line.
    pub(super) fn net_checks(&self, text: &str) -> Vec<Problem> {
        self.net
            .problems()
            .into_iter()
            .map(|message| {
                let section = message
                    .trim_start_matches('[')
                    .split(']')
                    .next()
                    .unwrap_or("net")
                    .trim_start_matches('[')
                    .to_string();
                let line = text
                    .lines()
                    .position(|l| l.trim().trim_matches(['[', ']']) == section)
                    .map_or(0, |i| i + 1);
                Problem { line, message }
            })
            .collect()
    }

    /// Every category a written policy blocks must be one the lists provide (or be
    /// marked optional): a misspelled category would otherwise block nothing, silently.
    /// With no list configured at all nothing can be checked; the running filter then
    /// says it is degraded.
    pub(super) fn category_checks(&self, text: &str) -> Vec<Problem> {
        let known = match crate::filter::load::category_names(&self.filter_sources()) {
            Ok(Some(known)) => known,
            Ok(None) => return Vec::new(),
            Err(e) => {
                return vec![Problem {
                    line: line_of_key(text, &["ut1_dir", "ut1_archive"]),
                    message: format!("[filter] cannot read the lists' categories: {e}"),
                }];
            }
        };
        crate::filter::policy::unknown_categories(&self.filter.policies, &known)
            .into_iter()
            .map(|u| Problem {
                line: text
                    .lines()
                    .position(|l| l.contains(&format!("\"{}\"", u.category)))
                    .map_or(0, |i| i + 1),
                message: format!("[[filter.policy]]: {u}"),
            })
            .collect()
    }

    /// Checks that need more than one key: the policies must form a usable set.
    pub(super) fn cross_checks(&self, text: &str) -> Option<Problem> {
        use crate::filter::{index::Index, policy::Policies};
        if !self.cache.redirect.is_empty() && self.dns.box_addresses.is_empty() {
            let line = text
                .lines()
                .position(|l| l.trim_start().starts_with("[[cache.redirect]]"))
                .or_else(|| {
                    text.lines()
                        .position(|l| l.trim_start().starts_with("redirect"))
                })
                .map_or(0, |i| i + 1);
            return Some(Problem {
                line,
                message: "[cache] redirect needs [dns] box_addresses: the address the DNS \
                          server answers the origins' names with"
                    .into(),
            });
        }
        for origin in &self.cache.redirect {
            if let Some(bad) = origin
                .hosts
                .iter()
                .find(|h| crate::filter::name::normalize(h).is_none())
            {
                return Some(Problem {
                    line: 0,
                    message: format!(
                        "[[cache.redirect]] `{}`: `{bad}` is not a host name",
                        origin.name
                    ),
                });
            }
        }
        let err =
            Policies::compile(&self.filter.policies, &Index::empty(), self.dns.block_mode).err()?;
        // Point at the policy the problem names, else at the first policy.
        let named = match &err {
            crate::filter::policy::PolicyError::Duplicate(n) => Some(n.clone()),
            crate::filter::policy::PolicyError::UnknownTarget { policy, .. } => {
                Some(policy.clone())
            }
            crate::filter::policy::PolicyError::Claimed { b, .. } => Some(b.clone()),
            _ => None,
        };
        let line = text
            .lines()
            .enumerate()
            .filter(|(_, l)| {
                let l = l.trim();
                match &named {
                    Some(n) => l.starts_with("name") && l.contains(&format!("\"{n}\"")),
                    None => l.starts_with("[[filter.policy]]"),
                }
            })
            .map(|(i, _)| i + 1)
            .last()
            .unwrap_or(0);
        Some(Problem {
            line,
            message: format!("[[filter.policy]]: {err}"),
        })
    }
}

/// The line of the first of `keys` set in `text` (0 if none is).
fn line_of_key(text: &str, keys: &[&str]) -> usize {
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            keys.iter().any(|k| {
                l.strip_prefix(k)
                    .is_some_and(|r| r.trim_start().starts_with('='))
            })
        })
        .map_or(0, |i| i + 1)
}
