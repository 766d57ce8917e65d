//! Sigma: detection rules in the SigmaHQ format, evaluated over the event stream.
//!
//! Sigma is the common language of detection engineering: thousands of public rules exist
//! and analysts already write their own in it. Supporting it lets an operator run those
//! rules as they are, next to the built-in detections, instead of translating each one.
//! Parsing and matching (modifiers, wildcards, regexes, conditions, the candidate index
//! that keeps the per-event cost low) come from the rsigma crates; this module only
//! decides which rules apply to this sensor and presents our events to them.
//!
//! Sigma rules are written against a log source (`logsource`) and name fields the way
//! Sysmon does (`Image`, `CommandLine`, `TargetFilename`, ...). A rule is loaded when its
//! product is `linux` (or unset), it names no `service` (a service implies another event
//! schema, such as auditd records), and its category is one the sensor produces:
//!
//! | category             | event kinds                  |
//! |----------------------|------------------------------|
//! | `process_creation`   | `process_exec`               |
//! | `file_event`         | `file_create`, `file_write`  |
//! | `file_delete`        | `file_unlink`                |
//! | `file_rename`        | `file_rename`                |
//! | `network_connection` | `net_connect`, `net_accept`  |
//!
//! Anything else (another product, an unknown category, a parse or compile error,
//! deprecated or unsupported rules, a missing or duplicate id) is skipped with a reason,
//! so that one bad file in a rule directory never stops the sensor.
//!
//! Sigma v2 filter and correlation documents run on the endpoint too. A filter adds its
//! conditions to the rules it names (or to every rule of its log source). Correlations
//! (event_count, value_count, temporal, ...) get the matches of the rules they name, with
//! the event's time, in one stateful engine whose windows are bounded in number and
//! size; as the specification says, the named rules raise nothing of their own unless
//! the correlation sets `generate: true`. A document naming a rule that is not loaded is
//! skipped with the reason.
//!
//! Events are not converted to JSON: a [`rsigma_eval::Event`] view answers field lookups
//! straight from the protobuf event, so the only allocations this side adds are the
//! joined command lines, made when a rule asks for them. Only the engine of the event's
//! category runs, and kinds without a category cost a match on the typed kind.
//!
//! [`schema`] is how our events present themselves to Sigma (categories, field names);
//! [`loader`] reads and vets rule files; this module holds the compiled rules and
//! evaluates them.

mod auditd;
mod installed;
mod loader;
mod schema;
#[cfg(test)]
mod tests;

use std::{collections::HashMap, sync::Arc};

use rsigma_eval::{CorrelationEngine, Engine};
use rsigma_parser::{Level, Status};
use sensor_common::EventKind;
use serde::Deserialize;

use self::schema::{Category, View};
pub use self::{
    installed::{Handoff, SigmaSource},
    loader::{Origin, RuleFile},
};
use crate::proto;

/// A rule's identity, as reported with each match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigmaMatch {
    pub id: String,
    pub title: String,
    pub description: String,
    /// informational, low, medium, high or critical, as the rule gives it (medium when it
    /// gives none).
    pub level: String,
    /// ATT&CK techniques from the rule's `attack.tNNNN[.NNN]` tags, e.g. `T1059.004`.
    pub mitre: Vec<String>,
}

/// Largest Sigma rule file read from `--sigma-rules`: SigmaHQ's rules are a few KiB each.
pub const MAX_RULE_FILE_BYTES: u64 = 1 << 20;

/// Which usable rules to load, by their level and status, as Sigma tooling filters them
/// (Chainsaw's and Hayabusa's level and status options). A public rule set holds many
/// low-level and experimental rules that are noise on a fleet; the default loads
/// `medium` and up, `stable` or `test`. A rule with no status loads whatever the
/// statuses: it was never published with a maturity to judge it by (an operator's own).
/// A rule with no level counts as `medium`, as it is reported.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SigmaFilter {
    pub min_level: Level,
    pub statuses: Vec<Status>,
}

impl Default for SigmaFilter {
    fn default() -> Self {
        Self {
            min_level: Level::Medium,
            statuses: vec![Status::Stable, Status::Test],
        }
    }
}

impl SigmaFilter {
    /// Every rule the sensor can use.
    pub fn everything() -> Self {
        Self {
            min_level: Level::Informational,
            statuses: vec![Status::Stable, Status::Test, Status::Experimental],
        }
    }

    fn admits(&self, level: Option<Level>, status: Option<Status>) -> bool {
        rank(level.unwrap_or(Level::Medium)) >= rank(self.min_level)
            && status.is_none_or(|s| self.statuses.contains(&s))
    }
}

fn rank(level: Level) -> u8 {
    match level {
        Level::Informational => 0,
        Level::Low => 1,
        Level::Medium => 2,
        Level::High => 3,
        Level::Critical => 4,
    }
}

/// A loaded rule as `sensor rules list` and `show` tell it: what the match does not carry.
#[derive(Clone, Debug)]
pub struct Catalogued {
    pub id: String,
    pub status: String,
    pub logsource: String,
    pub origin: Origin,
    pub file: String,
    /// The file's text, shared by the rules of one file.
    pub text: Arc<str>,
}

/// Compiled Sigma rules, one engine per log source category.
pub struct SigmaRules {
    engines: [Engine; Category::ALL.len()],
    /// Correlation documents, fed with the engines' matches; locked only for an event
    /// that matched a rule.
    correlation: Option<std::sync::Mutex<CorrelationEngine>>,
    /// By rule id: the engine reports matches by id.
    rules: HashMap<String, SigmaMatch>,
    /// In load order.
    catalog: Vec<Catalogued>,
    filtered: usize,
}

impl SigmaRules {
    /// Number of rules loaded.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Usable rules the filter left out.
    pub fn filtered(&self) -> usize {
        self.filtered
    }

    /// The rules loaded, in load order, each with what its matches report.
    pub fn catalog(&self) -> impl Iterator<Item = (&Catalogued, &SigmaMatch)> {
        self.catalog
            .iter()
            .filter_map(|c| Some((c, self.rules.get(&c.id)?)))
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Rules matched by `event` (none for kinds no category stands for).
    pub fn evaluate(&self, event: &proto::Event) -> Vec<SigmaMatch> {
        self.evaluate_kind(EventKind::from_name(&event.kind), event)
    }

    /// [`SigmaRules::evaluate`] for an event whose kind the caller has already parsed.
    pub fn evaluate_kind(&self, kind: Option<EventKind>, event: &proto::Event) -> Vec<SigmaMatch> {
        let Some(kind) = kind else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if let Some(category) = Category::of_kind(kind) {
            let engine = &self.engines[category as usize];
            if engine.rule_count() > 0 {
                let view = View::new(category, kind, event);
                self.matched(&view, engine.evaluate(&view), event, &mut out);
            }
        }
        let auditd = &self.engines[Category::Auditd as usize];
        if auditd.rule_count() > 0 {
            for record in auditd::records(kind, event) {
                self.matched(&record, auditd.evaluate(&record), event, &mut out);
            }
            // A rule that names no record type may match several records of one event.
            if out.len() > 1 {
                let mut seen = std::collections::HashSet::new();
                out.retain(|m| seen.insert(m.id.clone()));
            }
        }
        out
    }

    /// The rules behind `results` (matches on `view` of `event`), after the correlations
    /// have seen them.
    fn matched(
        &self,
        view: &impl rsigma_eval::Event,
        mut results: Vec<rsigma_eval::EvaluationResult>,
        event: &proto::Event,
        out: &mut Vec<SigmaMatch>,
    ) {
        if let Some(c) = &self.correlation
            && !results.is_empty()
        {
            let secs = (event.time_unix_ns / 1_000_000_000) as i64;
            results = c
                .lock()
                .unwrap()
                .process_with_detections(view, results, secs);
        }
        out.extend(
            results
                .into_iter()
                .filter_map(|r| self.rules.get(r.header.rule_id.as_deref()?).cloned()),
        );
    }
}
