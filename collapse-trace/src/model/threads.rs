//! State kept per thread while the core joins its events (the events of a MADV_COLLAPSE call
//! with its return, a collapse event with the scan that ends its attempt).
//!
//! A thread's events come in runs, and a thread makes one call after another: its entry
//! stays between calls and is found again by where the last lookup found it, so a call
//! costs no insert, remove or hash. Entries that hold nothing are dropped only when the
//! table is full.

use indexmap::IndexMap;

/// Per-thread entries by thread id, at most `CAP` of them.
#[derive(Debug)]
pub struct Threads<T, const CAP: usize> {
    map: IndexMap<u32, T, foldhash::fast::RandomState>,
    last: usize,
}

impl<T, const CAP: usize> Default for Threads<T, CAP> {
    fn default() -> Self {
        Threads {
            map: IndexMap::default(),
            last: 0,
        }
    }
}

impl<T: Default, const CAP: usize> Threads<T, CAP> {
    /// The entry of thread `pid`, if it has one.
    pub fn get_mut(&mut self, pid: u32) -> Option<&mut T> {
        if self
            .map
            .get_index(self.last)
            .is_some_and(|(k, _)| *k == pid)
        {
            return self.map.get_index_mut(self.last).map(|(_, v)| v);
        }
        let i = self.map.get_index_of(&pid)?;
        self.last = i;
        self.map.get_index_mut(i).map(|(_, v)| v)
    }

    /// The entry of thread `pid`, a new empty one if it has none; `None` when `CAP` threads
    /// hold something (`idle` says which entries hold nothing and may go).
    pub fn get_or_insert(&mut self, pid: u32, idle: impl Fn(&T) -> bool) -> Option<&mut T> {
        if self.get_mut(pid).is_some() {
            return self.map.get_index_mut(self.last).map(|(_, v)| v);
        }
        if self.map.len() >= CAP {
            self.map.retain(|_, v| !idle(v));
            if self.map.len() >= CAP {
                return None;
            }
        }
        let (i, _) = self.map.insert_full(pid, T::default());
        self.last = i;
        self.map.get_index_mut(i).map(|(_, v)| v)
    }

    /// Every entry.
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.map.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_stay_found_and_idle_ones_make_room() {
        let mut t: Threads<u32, 2> = Threads::default();
        *t.get_or_insert(1, |v| *v == 0).unwrap() = 5;
        *t.get_or_insert(2, |v| *v == 0).unwrap() = 0;
        assert_eq!(t.get_mut(1).copied(), Some(5));
        // Full: thread 2's entry holds nothing and goes; thread 3 gets its place.
        *t.get_or_insert(3, |v| *v == 0).unwrap() = 7;
        assert_eq!(t.get_mut(2), None);
        assert_eq!(
            (t.get_mut(1).copied(), t.get_mut(3).copied()),
            (Some(5), Some(7))
        );
        // Full of entries that hold something: no room.
        assert!(t.get_or_insert(4, |v| *v == 0).is_none());
        assert_eq!(t.values().sum::<u32>(), 12);
    }
}
