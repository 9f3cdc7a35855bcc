//! The Lua scripts, one per atomic operation (`lua/*.lua`), loaded once per backend.
//!
//! Map scripts are the shared prelude (`lua/prelude.lua`) followed by the operation's own
//! file. Invocation goes through `EVALSHA` and falls back to loading the script on
//! `NOSCRIPT`, so a script-cache flush, restart or failover is survived transparently.

use pulse::backend::{MapTarget, Ttl};
use redis::{Script, ScriptInvocation};

const PRELUDE: &str = include_str!("../lua/prelude.lua");

fn map_script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}\n{body}"))
}

/// Every script of the backend.
pub(crate) struct Scripts {
    pub(crate) map_set: Script,
    pub(crate) map_delete: Script,
    pub(crate) map_increment: Script,
    pub(crate) map_edit_list: Script,
    pub(crate) map_reset: Script,
    pub(crate) lease_acquire: Script,
    pub(crate) lease_release: Script,
    pub(crate) group_dead_letter: Script,
    pub(crate) stream_move: Script,
    pub(crate) stream_add_once: Script,
    pub(crate) delay_add: Script,
    pub(crate) delay_release: Script,
    pub(crate) delay_info: Script,
    pub(crate) delay_cancel: Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Scripts {
            map_set: map_script(include_str!("../lua/map_set.lua")),
            map_delete: map_script(include_str!("../lua/map_delete.lua")),
            map_increment: map_script(include_str!("../lua/map_increment.lua")),
            map_edit_list: map_script(include_str!("../lua/map_edit_list.lua")),
            map_reset: map_script(include_str!("../lua/map_reset.lua")),
            lease_acquire: Script::new(include_str!("../lua/lease_acquire.lua")),
            lease_release: Script::new(include_str!("../lua/lease_release.lua")),
            group_dead_letter: Script::new(include_str!("../lua/group_dead_letter.lua")),
            stream_move: Script::new(include_str!("../lua/stream_move.lua")),
            stream_add_once: Script::new(include_str!("../lua/stream_add_once.lua")),
            delay_add: Script::new(include_str!("../lua/delay_add.lua")),
            delay_release: Script::new(include_str!("../lua/delay_release.lua")),
            delay_info: Script::new(include_str!("../lua/delay_info.lua")),
            delay_cancel: Script::new(include_str!("../lua/delay_cancel.lua")),
        }
    }

    /// All scripts, for loading up front.
    pub(crate) fn all(&self) -> [&Script; 14] {
        [
            &self.map_set,
            &self.map_delete,
            &self.map_increment,
            &self.map_edit_list,
            &self.map_reset,
            &self.lease_acquire,
            &self.lease_release,
            &self.group_dead_letter,
            &self.stream_move,
            &self.stream_add_once,
            &self.delay_add,
            &self.delay_release,
            &self.delay_info,
            &self.delay_cancel,
        ]
    }
}

/// A map script invocation with the prelude's `KEYS[1]` and `ARGV[1..4]` filled in.
pub(crate) fn map_invocation<'a>(script: &'a Script, map: &MapTarget) -> ScriptInvocation<'a> {
    let mut inv = script.prepare_invoke();
    let (mode, ms) = match map.ttl {
        None => ("", 0),
        Some(t @ Ttl::Absolute(_)) => ("abs", t.millis()),
        Some(t @ Ttl::Sliding(_)) => ("slide", t.millis()),
    };
    inv.key(&map.hash)
        .arg(&map.channel)
        .arg(map.epoch_seed.to_string())
        .arg(mode)
        .arg(ms);
    inv
}
