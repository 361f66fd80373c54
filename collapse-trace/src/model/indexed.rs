//! Tables whose entries are found again by where the last lookup found its key.
//!
//! The core's events come in runs: a thread's events follow one another, and a thread makes
//! one call after another. So each table remembers the index of the last hit and checks it
//! before hashing, and entries stay where they are (no remove, no re-insert per call).

use indexmap::IndexMap;

/// A table of keys in the order first seen.
pub type Table<K, V> = IndexMap<K, V, foldhash::fast::RandomState>;

/// The index of `key` in `t`, trying `*last` first; a hit moves `*last` to it.
#[inline]
pub fn find<K, V, Q>(t: &Table<K, V>, last: &mut usize, key: &Q) -> Option<usize>
where
    K: std::hash::Hash + Eq + std::borrow::Borrow<Q>,
    Q: std::hash::Hash + Eq + ?Sized,
{
    if t.get_index(*last).is_some_and(|(k, _)| k.borrow() == key) {
        return Some(*last);
    }
    let i = t.get_index_of(key)?;
    *last = i;
    Some(i)
}

/// Per-thread state (the join of a thread's events) by thread id, at most `CAP` entries.
/// Entries that hold nothing are dropped only when the table is full.
#[derive(Debug)]
pub struct Threads<T, const CAP: usize> {
    map: Table<u32, T>,
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
    #[inline]
    pub fn get_mut(&mut self, pid: u32) -> Option<&mut T> {
        let i = find(&self.map, &mut self.last, &pid)?;
        self.map.get_index_mut(i).map(|(_, v)| v)
    }

    /// The entry of thread `pid`, a new empty one if it has none; `None` when `CAP` threads
    /// hold something (`idle` says which entries hold nothing and may go).
    #[inline]
    pub fn get_or_insert(&mut self, pid: u32, idle: impl Fn(&T) -> bool) -> Option<&mut T> {
        let i = match find(&self.map, &mut self.last, &pid) {
            Some(i) => i,
            None => {
                if self.map.len() >= CAP {
                    self.map.retain(|_, v| !idle(v));
                    if self.map.len() >= CAP {
                        return None;
                    }
                }
                self.last = self.map.insert_full(pid, T::default()).0;
                self.last
            }
        };
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
