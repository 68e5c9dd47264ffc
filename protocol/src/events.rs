//! What a box reports: events from its outbox, in batches, and its retained state.
//!
//! Every event has a stable id, the box's name and a sequence number that the box
//! never reuses, so the central side drops the duplicates that at-least-once delivery
//! brings (a kill -9 between the broker's ack and the row's deletion).

use std::collections::BTreeMap;
use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

use crate::topics::DesiredKind;

/// Largest batch once inflated: a compressed bomb stops here.
pub const MAX_BATCH_INFLATED: u64 = 32 << 20;
/// First byte of an encoded batch: the format (JSON, zlib-compressed).
const FORMAT_ZLIB_JSON: u8 = 1;

/// One event, as the box recorded it. (No `deny_unknown_fields`: serde cannot have it
/// with `flatten`; the body's own tag and fields are still checked.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The box's sequence number: with the box's name, the event's id.
    pub seq: u64,
    /// Unix seconds when it happened.
    pub at: i64,
    #[serde(flatten)]
    pub body: EventBody,
}

/// How much an event matters when the outbox is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    /// Never dropped (audit of admin actions, desired state applied or refused).
    Audit = 0,
    /// Dropped only when no statistics are left to drop.
    Record = 1,
    /// Dropped first, oldest first (aggregated statistics).
    Statistics = 2,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum EventBody {
    /// Something an admin or the central side did to the box.
    Audit {
        actor: String,
        action: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        detail: String,
    },
    /// DNS counters of one client for one closed hour.
    DnsHourly {
        /// Unix seconds of the hour's start.
        hour: i64,
        client: String,
        queries: u64,
        blocked: u64,
        /// Blocked queries per category.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        categories: BTreeMap<String, u64>,
    },
    /// Foreground time of one app on one device in one hour (from the hub).
    AppUsage {
        hour: i64,
        device: String,
        app: String,
        seconds: u32,
        /// The tablet's class at the time (the fleet's minutes per class and week).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        class: Option<String>,
    },
    /// A pupil present or absent in a lesson (from the hub).
    Attendance {
        class: String,
        pupil: String,
        present: bool,
    },
    /// Download or install progress of a catalogue item or a release.
    UpdateProgress {
        item: String,
        state: String,
        #[serde(default)]
        bytes: u64,
    },
    /// A firmware release's step on this box (the update agent's state changes).
    Release {
        version: String,
        state: crate::status::UpdateState,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        detail: String,
        /// The firmware running when the event was written.
        running: String,
        /// The box's board, so the fleet tells a release that did not apply (another
        /// board) from one that failed.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        board: String,
        #[serde(default)]
        progress: crate::status::UpdateProgress,
    },
    /// Desired state applied or refused.
    Desired {
        kind: DesiredKind,
        version: u64,
        applied: bool,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        reason: String,
    },
}

impl EventBody {
    pub fn priority(&self) -> Priority {
        match self {
            EventBody::Audit { .. } | EventBody::Desired { .. } | EventBody::Release { .. } => {
                Priority::Audit
            }
            EventBody::Attendance { .. } | EventBody::UpdateProgress { .. } => Priority::Record,
            EventBody::DnsHourly { .. } | EventBody::AppUsage { .. } => Priority::Statistics,
        }
    }
}

/// Events of one box, in sequence order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    pub site: String,
    pub r#box: String,
    pub events: Vec<Event>,
}

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("empty batch")]
    Empty,
    #[error("unknown batch format {0}")]
    Format(u8),
    #[error("the batch inflates past {MAX_BATCH_INFLATED} bytes")]
    TooLarge,
    #[error("the batch does not inflate: {0}")]
    Inflate(std::io::Error),
    #[error("the batch is not valid JSON: {0}")]
    Json(serde_json::Error),
}

impl Batch {
    /// The bytes published on the events topic.
    pub fn encode(&self) -> Vec<u8> {
        let json = serde_json::to_vec(self).expect("a batch serializes");
        let mut z =
            flate2::write::ZlibEncoder::new(vec![FORMAT_ZLIB_JSON], flate2::Compression::new(6));
        z.write_all(&json).expect("writing to memory");
        z.finish().expect("writing to memory")
    }

    pub fn decode(bytes: &[u8]) -> Result<Batch, BatchError> {
        let (&format, rest) = bytes.split_first().ok_or(BatchError::Empty)?;
        if format != FORMAT_ZLIB_JSON {
            return Err(BatchError::Format(format));
        }
        let mut json = Vec::new();
        flate2::read::ZlibDecoder::new(rest)
            .take(MAX_BATCH_INFLATED + 1)
            .read_to_end(&mut json)
            .map_err(BatchError::Inflate)?;
        if json.len() as u64 > MAX_BATCH_INFLATED {
            return Err(BatchError::TooLarge);
        }
        serde_json::from_slice(&json).map_err(BatchError::Json)
    }
}

/// Retained on the presence topic; the last will says `online: false`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Presence {
    pub online: bool,
    #[serde(default)]
    pub version: String,
}

/// Retained on the state topic: what the box reports of itself (the box wins).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ReportedState {
    pub version: String,
    pub uptime_secs: u64,
    pub disk_free_bytes: u64,
    pub backlog: Backlog,
    /// Desired state in force, per kind.
    pub desired: BTreeMap<String, AppliedDesired>,
    /// Desired-state messages refused, per reason.
    pub refused: BTreeMap<String, u64>,
    /// School counts: classes, teachers, pupils.
    pub counts: BTreeMap<String, u64>,
    /// The box's tablets, for the fleet's inventory (at most [`MAX_DEVICES_REPORTED`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceReport>,
}

/// Most tablets one state message lists (a school has hundreds at most; the bound
/// keeps a retained message small).
pub const MAX_DEVICES_REPORTED: usize = 2_000;

/// One tablet as its box knows it. The pupil is a pseudonym: names stay in the school.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DeviceReport {
    pub name: String,
    #[serde(default)]
    pub class: Option<String>,
    /// The assigned pupil's pseudonymous id (the same as in attendance events).
    #[serde(default)]
    pub pupil: Option<String>,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub agent: String,
    #[serde(default)]
    pub battery: Option<u8>,
    pub connected: bool,
    /// Unix seconds it was last connected (now, when it is).
    pub last_seen: i64,
}

/// The outbox as the box sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Backlog {
    pub rows: u64,
    pub bytes: u64,
    /// Unix seconds of the oldest row waiting, if any.
    pub oldest_at: Option<i64>,
    /// Rows dropped (statistics first) to keep the outbox under its bound.
    pub dropped_rows: u64,
    /// Unix seconds of the last batch the broker acknowledged.
    pub last_sync_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedDesired {
    pub version: u64,
    pub scope: String,
    pub applied_at: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_round_trips_and_compresses() {
        let events: Vec<Event> = (1..=200)
            .map(|seq| Event {
                seq,
                at: 1_700_000_000 + seq as i64,
                body: EventBody::DnsHourly {
                    hour: 1_700_000_000,
                    client: format!("10.0.0.{}", seq % 50),
                    queries: 120,
                    blocked: 3,
                    categories: [("adult".to_string(), 3)].into(),
                },
            })
            .collect();
        let batch = Batch {
            site: "s".into(),
            r#box: "b".into(),
            events,
        };
        let bytes = batch.encode();
        assert_eq!(Batch::decode(&bytes).unwrap(), batch);
        let plain = serde_json::to_vec(&batch).unwrap().len();
        assert!(bytes.len() * 4 < plain, "{} vs {plain}", bytes.len());
    }

    #[test]
    fn garbage_batches_are_errors() {
        assert!(matches!(Batch::decode(b""), Err(BatchError::Empty)));
        assert!(matches!(
            Batch::decode(b"\x09abc"),
            Err(BatchError::Format(9))
        ));
        assert!(matches!(
            Batch::decode(b"\x01abc"),
            Err(BatchError::Inflate(_))
        ));
        // A zlib bomb: 64 MiB of zeros compresses to a few KiB.
        let mut z = flate2::write::ZlibEncoder::new(vec![1u8], flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..64 {
            z.write_all(&zeros).unwrap();
        }
        assert!(matches!(
            Batch::decode(&z.finish().unwrap()),
            Err(BatchError::TooLarge)
        ));
    }
}
