//! What a chaos run observed, as the engine hands it to the results: every action taken or
//! seen about a fault, with its time, and every producer's 10 ms timeline.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::plan::chaos::ChaosPlan;
use crate::report::timeline::History;

/// What a producer did or saw about one fault, with when (ns after the start of the run).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    /// The fault, by its id in the plan.
    pub fault: usize,
    /// When, ns after the start of the run.
    pub at_ns: u64,
    /// What: `injected`, `ended`, `detected`, `restarted`, `failed`.
    pub what: ActionKind,
    /// Who did or saw it: `tester`, `generator thread 0`, `reader 1`.
    pub by: String,
    /// In words: `stopped reader 1 (pid 4242)`, `writer restart refused: no space`.
    pub detail: String,
}

/// What an [`Action`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    /// The fault took effect.
    Injected,
    /// The fault's cause was taken away (a stopped reader continued, a fill released).
    Ended,
    /// Something noticed the fault.
    Detected,
    /// What the fault broke was replaced (a new reader attached, a writer's new epoch).
    Restored,
    /// Injecting it, or restoring after it, failed for a while or for good.
    Trouble,
}

/// Everything a chaos run observed about its faults.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChaosLog {
    /// The schedule that was carried out.
    pub plan: Option<ChaosPlan>,
    /// Every action, in the order the engine heard of them (not necessarily time order).
    pub actions: Vec<Action>,
    /// Per producer (`generator`, `reader.0`, ...), its merged 10 ms timeline.
    pub histories: BTreeMap<String, History>,
}

/// The timeline key of the generator threads together.
pub const GENERATOR: &str = "generator";
