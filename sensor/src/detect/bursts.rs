//! Per-actor state that lives for a window from the actor's first event: the bookkeeping
//! of detections that count what one process does within a time (a discovery burst,
//! ransomware-like renames).

use std::collections::HashMap;

/// An actor: a process by (pid, start time).
pub type Actor = (u32, u64);

pub struct Bursts<V> {
    /// By actor: when its window opened, and its state.
    open: HashMap<Actor, (u64, V)>,
    window_ns: u64,
    max: usize,
}

impl<V: Default> Bursts<V> {
    pub fn new(window_ns: u64, max: usize) -> Self {
        Self {
            open: HashMap::new(),
            window_ns,
            max,
        }
    }

    /// `actor`'s state at `now`: a new one when none is open or its window has passed.
    /// At most `max` actors are followed: past that, those whose windows have passed go
    /// first, then all of them.
    pub fn at(&mut self, actor: Actor, now: u64) -> &mut V {
        let window = self.window_ns;
        if self.open.len() >= self.max {
            self.open
                .retain(|_, (first, _)| now.saturating_sub(*first) <= window);
            if self.open.len() >= self.max {
                self.open.clear();
            }
        }
        let (first, state) = self
            .open
            .entry(actor)
            .or_insert_with(|| (now, V::default()));
        if now.saturating_sub(*first) > window {
            *first = now;
            *state = V::default();
        }
        state
    }
}
